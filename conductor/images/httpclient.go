package images

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// newHTTPClient is the cache's client for image and checksum-file
// servers: connecting (TCP, TLS) and waiting for response headers are
// bounded by connect, and a connection that sends nothing for read fails
// (an idle timeout, not a total one: a large image may take hours). Each
// response body is cut off past the byte budget the request's context
// carries (budgetKey), and a response that declares more is refused
// before its body is read.
func newHTTPClient(connect, read time.Duration) *http.Client {
	d := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: conn, timeout: read}, nil
		},
		TLSHandshakeTimeout:   connect,
		ResponseHeaderTimeout: connect,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
	return &http.Client{Transport: budgetTransport{tr}}
}

// idleConn fails a read that waits longer than timeout for data.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

// Read implements net.Conn with a deadline set afresh for each read.
func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// budgetKey keys the *atomic.Int64 byte budget of a download in its
// request's context.
type budgetKey struct{}

// budgetTransport limits response bodies to the budget of the request's
// context, if any.
type budgetTransport struct{ base http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (t budgetTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	budget, _ := req.Context().Value(budgetKey{}).(*atomic.Int64)
	if budget == nil || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, nil
	}
	if limit := budget.Load(); resp.ContentLength > limit {
		resp.Body.Close()
		return nil, &bodyTooLarge{declared: resp.ContentLength, limit: limit}
	}
	resp.Body = &budgetBody{ReadCloser: resp.Body, budget: budget}
	return resp, nil
}

// bodyTooLarge: a response declared (declared >= 0) or sent more than its
// budget.
type bodyTooLarge struct {
	declared, limit int64
}

func (e *bodyTooLarge) Error() string {
	if e.declared >= 0 {
		return fmt.Sprintf("the server says %d bytes, more than the %d allowed", e.declared, e.limit)
	}
	return fmt.Sprintf("the server sent more than the %d bytes allowed", e.limit)
}

// budgetBody fails once more than the budget has been read; the budget
// may be lowered while it is read (once the size is known).
type budgetBody struct {
	io.ReadCloser
	budget *atomic.Int64
	n      int64
}

// Read implements io.Reader.
func (b *budgetBody) Read(p []byte) (int, error) {
	limit := b.budget.Load()
	if b.n >= limit {
		// One byte more tells a body that ends here from one that goes on.
		if err := atEnd(b.ReadCloser); err != nil {
			return 0, err
		}
		return 0, &bodyTooLarge{declared: -1, limit: limit}
	}
	if int64(len(p)) > limit-b.n {
		p = p[:limit-b.n]
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// atEnd reads one byte more: io.EOF (or the read's error) when r has
// ended, nil when it goes on.
func atEnd(r io.Reader) error {
	var one [1]byte
	if n, err := io.ReadFull(r, one[:]); n == 0 {
		return err
	}
	return nil
}

// limitedBody is an io.Reader that fails past max bytes, naming what.
type limitedBody struct {
	r         io.Reader
	max, left int64
	what      string
}

// Read implements io.Reader.
func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		if err := atEnd(l.r); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%s larger than %d bytes", l.what, l.max)
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}
