package agentclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rivetmetal/rivet/wire"
)

// LogStream is the agent's log as it answered wire.AgentLogPath.
type LogStream struct {
	// Offset is the offset of the stream's first byte in the agent's log.
	Offset int64
	// Body is the log; with follow it goes on until the agent stops or
	// the context ends. Close it.
	Body io.ReadCloser
}

// FollowLog opens the agent's log from offset on (wire.AgentLogPath); with
// follow the answer goes on as the agent logs. The answer's headers must
// come within the client's Timeout; the stream itself lasts as long as
// ctx. Errors wrap ErrUnreachable for transport failures and *APIError
// for refusals; they never contain the URL, which holds the token.
func (c *Client) FollowLog(ctx context.Context, ep Endpoint, offset int64, follow bool) (*LogStream, error) {
	hc, err := c.httpClient(ep)
	if err != nil {
		return nil, fmt.Errorf("agent %s: log: %w", ep.URL, err)
	}
	q := url.Values{"agent_token": {ep.Token}, "offset": {strconv.FormatInt(offset, 10)}}
	if follow {
		q.Set("follow", "true")
	}
	rctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, strings.TrimSuffix(ep.URL, "/")+wire.AgentLogPath+"?"+q.Encode(), nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("agent %s: log: %w", ep.URL, redact(err))
	}
	req.Header.Set("Accept", "text/plain")
	late := time.AfterFunc(c.cfg.Timeout, cancel)
	resp, err := hc.Do(req)
	if !late.Stop() {
		err = fmt.Errorf("no answer within %s", c.cfg.Timeout)
		if resp != nil {
			resp.Body.Close()
		}
	}
	if err != nil {
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("agent %s: log: %w", ep.URL, ctx.Err())
		}
		return nil, fmt.Errorf("agent %s: log: %w: %w", ep.URL, ErrUnreachable, redact(err))
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		apiErr := &APIError{Status: resp.StatusCode}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		_ = json.Unmarshal(data, &apiErr.Fault)
		return nil, fmt.Errorf("agent %s: log: %w", ep.URL, apiErr)
	}
	from, _ := strconv.ParseInt(resp.Header.Get(wire.AgentLogOffsetHeader), 10, 64)
	return &LogStream{Offset: from, Body: &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}}, nil
}

// cancelOnClose releases the request's context with its body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

// Close implements io.Closer.
func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
