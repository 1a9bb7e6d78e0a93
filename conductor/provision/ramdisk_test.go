package provision

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/power/fake"
	"github.com/rivetmetal/rivet/conductor/provision/internal/internalinfo"
	"github.com/rivetmetal/rivet/conductor/store"
	"github.com/rivetmetal/rivet/wire"
)

func TestTokens(t *testing.T) {
	tok, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`).MatchString(tok) {
		t.Fatalf("token %q is not 43 URL-safe characters", tok)
	}
	info := &internalinfo.Info{Agent: internalinfo.Agent{Token: tok}}
	if !tokenValid(info, tok) || tokenValid(info, tok[:42]) || tokenValid(info, "") {
		t.Fatal("token comparison wrong")
	}
	if tokenValid(&internalinfo.Info{Agent: internalinfo.Agent{Token: wire.Masked}}, wire.Masked) {
		t.Fatal("masked token accepted")
	}
	if tokenValid(&internalinfo.Info{}, "") {
		t.Fatal("missing token accepted")
	}
}

func TestFreshlyBootedAndProgress(t *testing.T) {
	l := &wire.CommandList{}
	if !freshlyBooted(l) {
		t.Error("empty list is freshly booted")
	}
	l.Commands = append(l.Commands, wire.CommandResult{CommandName: "get_deploy_steps", CommandStatus: wire.StatusSucceeded},
		wire.CommandResult{CommandName: "get_service_steps", CommandStatus: wire.StatusSucceeded})
	if !freshlyBooted(l) {
		t.Error("get_*_steps only is freshly booted")
	}
	l.Commands = append(l.Commands, wire.CommandResult{CommandName: "execute_deploy_step", CommandStatus: wire.StatusRunning,
		CommandResult: json.RawMessage(`{"progress":{"phase":"write","bytes_written":42,"total_bytes":100}}`)})
	if freshlyBooted(l) {
		t.Error("a running write is not freshly booted")
	}
	deploy := &kind{wire: wire.DeployStepKind}
	if p := progressOf(deploy, l.Last()); p == nil || p.BytesWritten != 42 || p.TotalBytes != 100 {
		t.Errorf("running progress = %+v", p)
	}
	done := wire.CommandResult{CommandResult: json.RawMessage(`{"deploy_result":{"result":"ok","progress":{"bytes_written":100}},"deploy_step":{"step":"write_image","interface":"deploy"}}`)}
	if p := progressOf(deploy, &done); p == nil || p.BytesWritten != 100 {
		t.Errorf("final progress = %+v", p)
	}
	if p := progressOf(deploy, &wire.CommandResult{}); p != nil {
		t.Errorf("null result progress = %+v", p)
	}
}

// TestLookupNeedsAMatchingAddress: the agent token (and the node's
// document) go only to a lookup whose addresses include a port of the
// node; node_uuid narrows a match and never makes one; a refused lookup
// writes nothing, and no lookup replaces the token handed out.
func TestLookupNeedsAMatchingAddress(t *testing.T) {
	e, st := newTestEngine(t, mustFake(t), Config{APIURL: "http://127.0.0.1:6385"})
	ctx := context.Background()
	n1 := seedDeployWait(t, e, st, "") // port 52:54:00:00:00:01, no token yet
	n2 := &store.Node{Name: "n2", Driver: fake.Name}
	if err := st.CreateNode(ctx, n2); err != nil {
		t.Fatal(err)
	}
	if err := st.CreatePort(ctx, &store.Port{NodeID: n2.ID, Address: "52:54:00:00:00:02"}); err != nil {
		t.Fatal(err)
	}
	const mac1, mac2, stranger = "52:54:00:00:00:01", "52:54:00:00:00:02", "52:54:00:00:00:99"
	stored := func() *store.Node {
		n, err := st.GetNode(ctx, n1.UUID)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	refused := []struct {
		name string
		macs []string
		uuid string
	}{
		{"node_uuid alone", nil, n1.UUID},
		{"node_uuid with an unknown MAC", []string{stranger}, n1.UUID},
		{"node_uuid with another node's MAC", []string{mac2}, n1.UUID},
		{"another node's UUID with this node's MAC", []string{mac1}, n2.UUID},
		{"unknown MAC", []string{stranger}, ""},
		{"MACs of two nodes", []string{mac1, mac2}, ""},
		{"a node in a state that takes no lookup (enroll)", []string{mac2}, ""},
	}
	before := stored()
	before2, _ := st.GetNode(ctx, n2.UUID)
	for _, c := range refused {
		for _, withToken := range []bool{true, false} {
			node, tok, err := e.Ramdisk().Lookup(ctx, c.macs, c.uuid, withToken)
			if !errors.Is(err, errdefs.ErrNotFound) || node != nil || tok != nil {
				t.Errorf("%s (token %v): lookup = %v, %v, %v; want not found", c.name, withToken, node, tok, err)
			}
		}
	}
	if after := stored(); !after.UpdatedAt.Equal(before.UpdatedAt) || after.InternalString("agent_secret_token") != "" {
		t.Fatalf("refused lookups wrote to the node: %v", after.DriverInternalInfo)
	}
	if after2, _ := st.GetNode(ctx, n2.UUID); !after2.UpdatedAt.Equal(before2.UpdatedAt) || after2.InternalString("agent_secret_token") != "" {
		t.Fatalf("refused lookups wrote to the node in enroll: %v", after2.DriverInternalInfo)
	}

	node, tok, err := e.Ramdisk().Lookup(ctx, []string{"52:54:00:00:00:01"}, "", true)
	if err != nil || node.UUID != n1.UUID || tok == nil || len(*tok) != 43 {
		t.Fatalf("lookup by the node's MAC = %v, %v, %v", node, tok, err)
	}
	token := *tok
	// Narrowed by node_uuid among two nodes' MACs: found, token masked.
	node, tok, err = e.Ramdisk().Lookup(ctx, []string{mac2, mac1}, n1.UUID, true)
	if err != nil || node.UUID != n1.UUID || tok == nil || *tok != wire.Masked {
		t.Fatalf("narrowed lookup = %v, %v, %v", node, tok, err)
	}
	for _, c := range refused {
		e.Ramdisk().Lookup(ctx, c.macs, c.uuid, true) //nolint:errcheck // refused above
	}
	if got := stored().InternalString("agent_secret_token"); got != token {
		t.Fatal("the agent token changed after it was handed out")
	}
}

// TestReleaseUndeliveredToken: a token whose lookup answer never reached
// the agent is taken back, so the agent's next lookup gets a new one
// instead of "******"; a stale or wrong token releases nothing, and a
// token an agent has heartbeated with is never taken back.
func TestReleaseUndeliveredToken(t *testing.T) {
	e, st := newTestEngine(t, mustFake(t), Config{APIURL: "http://127.0.0.1:6385"})
	ctx := context.Background()
	n := seedDeployWait(t, e, st, "")
	token := func() string { t.Helper(); return lookupToken(t, e) }
	stored := func() string {
		t.Helper()
		got, err := st.GetNode(ctx, n.UUID)
		if err != nil {
			t.Fatal(err)
		}
		return got.InternalString("agent_secret_token")
	}

	first := token()
	if len(first) != 43 || token() != wire.Masked {
		t.Fatalf("first lookup %q; the second must be masked", first)
	}
	for _, wrong := range []string{"", wire.Masked, first[:42] + "x"} {
		if err := e.Ramdisk().ReleaseToken(ctx, n.UUID, wrong); err != nil {
			t.Fatalf("release %q: %v", wrong, err)
		}
		if stored() != first {
			t.Fatalf("release of %q changed the token", wrong)
		}
	}
	if err := e.Ramdisk().ReleaseToken(ctx, n.UUID, first); err != nil {
		t.Fatal(err)
	}
	if stored() != "" {
		t.Fatal("the undelivered token was not released")
	}
	second := token()
	if len(second) != 43 || second == first {
		t.Fatalf("lookup after the release got %q (first %q)", second, first)
	}
	// A heartbeat with the new token shows the agent has it: it stays.
	hb := wire.HeartbeatRequest{CallbackURL: "http://127.0.0.1:9999", AgentToken: second, AgentVersion: "10.0.0"}
	if err := e.Ramdisk().Heartbeat(ctx, n.UUID, hb); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if err := e.Ramdisk().ReleaseToken(ctx, n.UUID, second); err != nil {
		t.Fatal(err)
	}
	if stored() != second {
		t.Fatal("a token the agent heartbeated with was released")
	}
	if err := e.Ramdisk().ReleaseToken(ctx, "6a5a3c8e-1d2b-4f6e-9a0c-2b7d8e9f0a11", second); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("release on an unknown node: %v", err)
	}
}

// TestUnusedTokenIsVoidAfterHeartbeatTimeout: a token handed out more
// than the heartbeat timeout ago and never heartbeated with is void — the
// next lookup gets a new one — while a younger one, a used one and a
// pre-generated one stay masked.
func TestUnusedTokenIsVoidAfterHeartbeatTimeout(t *testing.T) {
	e, st := newTestEngine(t, mustFake(t), Config{APIURL: "http://127.0.0.1:6385", HeartbeatTimeout: time.Minute})
	ctx := context.Background()
	n := seedDeployWait(t, e, st, "")
	lookup := func() string { t.Helper(); return lookupToken(t, e) }
	set := func(key string, v any) {
		t.Helper()
		if err := st.WithNodeLock(ctx, n.UUID, func(tx store.Tx) error {
			tx.Node().DriverInternalInfo[key] = v
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	ago := func(d time.Duration) string { return agentTimestamp(time.Now().Add(-d)) }

	first := lookup()
	if len(first) != 43 {
		t.Fatalf("first token %q", first)
	}
	set("agent_secret_token_handed_out", ago(59*time.Second))
	if got := lookup(); got != wire.Masked {
		t.Fatalf("a token handed out 59 s ago was replaced: %q", got)
	}
	set("agent_secret_token_handed_out", ago(61*time.Second))
	second := lookup()
	if len(second) != 43 || second == first {
		t.Fatalf("a token unused for 61 s was not replaced: %q", second)
	}
	if got := lookup(); got != wire.Masked {
		t.Fatalf("the new token was handed out twice: %q", got)
	}

	// Used: a heartbeat recorded since the hand-out (as the heartbeat
	// endpoint records it; processing it would move the node on), with
	// or without a callback URL.
	set("agent_secret_token_handed_out", ago(time.Hour))
	set("agent_last_heartbeat", ago(time.Hour-time.Second))
	if got := lookup(); got != wire.Masked {
		t.Fatalf("a token heartbeated with was replaced: %q", got)
	}
	set("agent_last_heartbeat", ago(2*time.Hour)) // an earlier operation's
	set("agent_url", "http://127.0.0.1:9999")
	if got := lookup(); got != wire.Masked {
		t.Fatalf("a token whose agent's URL is on record was replaced: %q", got)
	}
	// Pre-generated: never void.
	set("agent_url", nil)
	set("agent_secret_token_pregenerated", true)
	if got := lookup(); got != wire.Masked {
		t.Fatalf("a pre-generated token was replaced: %q", got)
	}
	// Handed out before the key existed: never void.
	set("agent_secret_token_pregenerated", nil)
	set("agent_secret_token_handed_out", nil)
	if got := lookup(); got != wire.Masked {
		t.Fatalf("a token without its hand-out time was replaced: %q", got)
	}
}

// lookupToken looks up the node seedDeployWait made, by its port's MAC,
// and returns the token the lookup answered with.
func lookupToken(t *testing.T, e *Engine) string {
	t.Helper()
	_, tok, err := e.Ramdisk().Lookup(context.Background(), []string{"52:54:00:00:00:01"}, "", true)
	if err != nil || tok == nil {
		t.Fatalf("lookup: %v, %v", tok, err)
	}
	return *tok
}

// TestLookupWithATokenReadsTheNodeInItsWrite: a lookup by MAC that hands
// out the agent token reads the node once, in the write that records the
// token, not before it as well.
func TestLookupWithATokenReadsTheNodeInItsWrite(t *testing.T) {
	ctx := context.Background()
	e, st := countingEngine(t, noAgent{})
	n := seedDeployWait(t, e, st, "")
	reads := st.readCount()
	got, tok, err := e.Ramdisk().Lookup(ctx, []string{"52:54:00:00:00:01"}, "", true)
	if err != nil || got.UUID != n.UUID || tok == nil || len(*tok) != 43 {
		t.Fatalf("lookup = %v, %v, %v", got, tok, err)
	}
	if d := st.readCount() - reads; d != 0 {
		t.Fatalf("%d node reads besides the write's", d)
	}
	if stored, _ := st.Store.GetNode(ctx, n.UUID); stored.InternalString("agent_secret_token") != *tok {
		t.Fatal("the token handed out is not the node's")
	}
}
