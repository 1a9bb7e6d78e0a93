// Package heartbeat sends the agent's periodic POST /v1/heartbeat/{node} to
// the Ironic API: the callback URL at which the conductor reaches the agent,
// the agent token and version. Timing follows IPA: after a success the next
// beat comes heartbeat_timeout × U(0.3, 0.6) later, after an error 5 s ×
// U(1, 2) later, and Trigger forces a beat (at most one every 5 s) so the
// conductor notices a finished command at once.
//
// Ironic's answers decide what happens next. 202: beat again later. 409
// (node locked), 503 (no free conductor), an unreachable API, or a 400 for
// another reason (a changed callback URL, a field the declared version
// does not allow): log it and retry soon. A 400 about the agent token (the
// conductor wiped it at the end of an operation) or a 404 (the node is
// gone) ends Run with ErrTokenRejected or ErrNodeNotFound: only a new
// lookup helps, and that is the caller's job.
package heartbeat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

// Timing defaults from IPA's heartbeater.
const (
	// DefaultForcedInterval is the shortest gap between two beats when a
	// beat is forced.
	DefaultForcedInterval = 5 * time.Second
	// DefaultErrorInterval is the base wait after a failed beat.
	DefaultErrorInterval = 5 * time.Second
	// DefaultTimeout is Ironic's default heartbeat_timeout.
	DefaultTimeout = 300 * time.Second
)

// Config controls a Beater. Zero values mean the defaults.
type Config struct {
	// APIURL is the Ironic API endpoint that answered the lookup.
	APIURL string
	// APIVersion is the declared microversion; "" means 1.68.
	APIVersion string
	// NodeUUID is the node from the lookup.
	NodeUUID string
	// CallbackURL is the agent's own API URL as the conductor reaches it.
	CallbackURL string
	// Token is the agent token from the lookup.
	Token string
	// AgentVersion is reported as agent_version.
	AgentVersion string
	// VerifyCA is the agent's PEM certificate under auto-TLS, sent as
	// agent_verify_ca on every beat; empty means not sent.
	VerifyCA string
	// Timeout is the lookup's heartbeat_timeout; 0 means 300 s.
	Timeout time.Duration
	// ForcedInterval is the shortest gap before a forced beat; 0 means 5 s.
	ForcedInterval time.Duration
	// ErrorInterval is the base wait after a failed beat (the wait is
	// ErrorInterval × U(1, 2)); 0 means 5 s.
	ErrorInterval time.Duration
	// Client sends the beats; nil means a client with a 30 s timeout.
	Client *http.Client
	// RequestID is sent as X-OpenStack-Request-ID when set.
	RequestID string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Rand returns uniform values in [0,1); nil means math/rand. Tests
	// inject it to pin the jitter.
	Rand func() float64
	// OnBeat, when set, is called after every beat with its HTTP status
	// (0 when the API was unreachable) and error.
	OnBeat func(status int, err error)
}

// Errors that end Run: the beats cannot succeed until the agent looks its
// node up again.
var (
	// ErrTokenRejected: Ironic refused the agent token (400 "Invalid or
	// missing agent token received."), normally because it wiped the token
	// at the end of a deploy or clean.
	ErrTokenRejected = errors.New("agent token rejected by Ironic")
	// ErrNodeNotFound: Ironic does not know the node (404).
	ErrNodeNotFound = errors.New("node not found by Ironic")
)

// Beater sends heartbeats until its context ends.
type Beater struct {
	cfg     Config
	trigger chan struct{}
	mu      sync.Mutex
	token   string
}

// New returns a Beater; call Run to start it.
func New(cfg Config) *Beater {
	if cfg.APIVersion == "" {
		cfg.APIVersion = wire.HeartbeatAPIVersion
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ForcedInterval <= 0 {
		cfg.ForcedInterval = DefaultForcedInterval
	}
	if cfg.ErrorInterval <= 0 {
		cfg.ErrorInterval = DefaultErrorInterval
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	return &Beater{cfg: cfg, trigger: make(chan struct{}, 1), token: cfg.Token}
}

// Trigger asks for a beat as soon as the forced-beat rate limit allows.
// It never blocks.
func (b *Beater) Trigger() {
	select {
	case b.trigger <- struct{}{}:
	default:
	}
}

// SetToken replaces the agent token (after a new lookup).
func (b *Beater) SetToken(tok string) {
	b.mu.Lock()
	b.token = tok
	b.mu.Unlock()
}

// NextInterval returns the wait before the next regular beat after a beat
// that succeeded (ok) or failed.
func (b *Beater) NextInterval(ok bool) time.Duration {
	if ok {
		return time.Duration(float64(b.cfg.Timeout) * (0.3 + 0.3*b.cfg.Rand()))
	}
	return time.Duration(float64(b.cfg.ErrorInterval) * (1 + b.cfg.Rand()))
}

// Run beats until ctx ends, returning ctx.Err(), or until Ironic rejects a
// beat in a way only a new lookup can fix, returning an error wrapping
// ErrTokenRejected or ErrNodeNotFound. The first beat goes out at once.
func (b *Beater) Run(ctx context.Context) error {
	next := time.Now()
	var last time.Time
	forced := false
	for {
		now := time.Now()
		due := !now.Before(next) || (forced && now.Sub(last) >= b.cfg.ForcedInterval)
		if due {
			err := b.beat(ctx)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, ErrTokenRejected) || errors.Is(err, ErrNodeNotFound) {
				return err
			}
			last, forced = time.Now(), false
			next = last.Add(b.NextInterval(err == nil))
			continue
		}
		wake := next
		if forced {
			wake = last.Add(b.cfg.ForcedInterval)
		}
		t := time.NewTimer(max(wake.Sub(now), time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-b.trigger:
			forced = true
		case <-t.C:
		}
		t.Stop()
	}
}

// beat sends one heartbeat and logs what Ironic answered and what the
// agent does next.
func (b *Beater) beat(ctx context.Context) error {
	status, fault, err := b.send(ctx)
	log := b.cfg.Logger
	node := b.cfg.NodeUUID
	switch {
	case err == nil:
		log.Debug("heartbeat sent", "node", node)
	case status == http.StatusBadRequest && strings.Contains(strings.ToLower(fault), "agent token"):
		err = fmt.Errorf("%w: %w", ErrTokenRejected, err)
		log.Warn("heartbeat rejected: Ironic no longer accepts this agent token (it wipes the token when an operation ends); stopping heartbeats to look the node up again",
			"node", node, "status", status, "fault", fault)
	case status == http.StatusNotFound:
		err = fmt.Errorf("%w: %w", ErrNodeNotFound, err)
		log.Warn("heartbeat rejected: Ironic does not know this node (or the heartbeat API version); stopping heartbeats to look the node up again",
			"node", node, "status", status, "fault", fault)
	case status == http.StatusConflict:
		log.Warn("heartbeat conflict: the node is locked by a conductor; retrying in 5-10 s", "node", node, "fault", fault)
	case status == http.StatusServiceUnavailable:
		log.Warn("heartbeat refused: no conductor is free (503); retrying in 5-10 s", "node", node, "fault", fault)
	case status == 0:
		log.Warn("heartbeat failed: Ironic API unreachable; retrying in 5-10 s", "node", node, "error", err)
	default:
		log.Error("heartbeat rejected; retrying in 5-10 s (a changed callback URL or certificate needs the node to be powered off first)",
			"node", node, "status", status, "fault", fault)
	}
	if b.cfg.OnBeat != nil {
		b.cfg.OnBeat(status, err)
	}
	return err
}

// send posts one beat; it returns the HTTP status (0 when the API was not
// reached) and, on an error answer, Ironic's fault text.
func (b *Beater) send(ctx context.Context) (int, string, error) {
	b.mu.Lock()
	body := wire.HeartbeatRequest{
		CallbackURL:   b.cfg.CallbackURL,
		AgentToken:    b.token,
		AgentVersion:  b.cfg.AgentVersion,
		AgentVerifyCA: b.cfg.VerifyCA,
	}
	b.mu.Unlock()
	buf, err := json.Marshal(body)
	if err != nil {
		return 0, "", err
	}
	u := strings.TrimRight(b.cfg.APIURL, "/") + "/v1/heartbeat/" + b.cfg.NodeUUID
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(buf))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set(wire.APIVersionHeader, b.cfg.APIVersion)
	req.Header.Set("User-Agent", "rivet-agent")
	if b.cfg.RequestID != "" {
		req.Header.Set(wire.RequestIDHeader, b.cfg.RequestID)
	}
	resp, err := b.cfg.Client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("POST %s: %w", u, err)
	}
	defer resp.Body.Close()
	respBody, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		fault := wire.FaultText(respBody)
		return resp.StatusCode, fault, fmt.Errorf("POST %s: HTTP %d: %s", u, resp.StatusCode, fault)
	}
	return resp.StatusCode, "", nil
}
