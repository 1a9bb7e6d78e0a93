package conductor

import (
	"io"
	"net/http"
	"time"
)

// Timeouts bound the API listener's connections, so that a client that
// sends slowly, reads slowly or idles cannot hold one for ever. Zero
// fields take DefaultTimeouts' values.
type Timeouts struct {
	// ReadHeader bounds the TLS handshake and a request's headers (a
	// slowloris is cut off after it).
	ReadHeader time.Duration
	// Read bounds reading a whole request; routes that take large bodies
	// (provision requests with a config drive, inspection data) extend it
	// in proportion to their cap.
	Read time.Duration
	// Write bounds handling a request and writing its answer; file
	// downloads and the dashboard's event stream extend it as they make
	// progress.
	Write time.Duration
	// Idle closes a kept-alive connection idle this long.
	Idle time.Duration
	// Download is how long a file download (/images/, /agent_images/,
	// /boot/) may take to send each 4 MiB before it is cut off.
	Download time.Duration
}

// DefaultTimeouts are the API listener's timeouts.
var DefaultTimeouts = Timeouts{
	ReadHeader: 10 * time.Second,
	Read:       time.Minute,
	Write:      2 * time.Minute,
	Idle:       2 * time.Minute,
	Download:   time.Minute,
}

func (t Timeouts) withDefaults() Timeouts {
	or := func(v, d time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return d
	}
	d := DefaultTimeouts
	return Timeouts{ReadHeader: or(t.ReadHeader, d.ReadHeader), Read: or(t.Read, d.Read),
		Write: or(t.Write, d.Write), Idle: or(t.Idle, d.Idle), Download: or(t.Download, d.Download)}
}

// apply sets a server's timeouts.
func (t Timeouts) apply(srv *http.Server) {
	t = t.withDefaults()
	srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout = t.ReadHeader, t.Read, t.Write, t.Idle
}

func (t Timeouts) download() time.Duration { return t.withDefaults().Download }

// downloadChunk is what a download must send within each Download period.
const downloadChunk = 4 << 20

// downloads serves h's answers (files) with a write deadline that moves
// on as they make progress: each 4 MiB must go out within idle, however
// long the whole file takes. Nil stays nil.
func downloads(h http.Handler, idle time.Duration) http.Handler {
	if h == nil {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pw := &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w), idle: idle}
		pw.extend()
		h.ServeHTTP(pw, r)
	})
}

// progressWriter extends the write deadline before each chunk it writes.
type progressWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

func (w *progressWriter) extend() {
	// Not supported only by test recorders: nothing to extend there.
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.idle))
}

// Write implements io.Writer, in chunks.
func (w *progressWriter) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		k := min(len(p), downloadChunk)
		w.extend()
		m, err := w.ResponseWriter.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// ReadFrom implements io.ReaderFrom in chunks, keeping the underlying
// writer's zero-copy path (sendfile needs an *os.File behind at most one
// io.LimitedReader, which http.ServeContent passes).
func (w *progressWriter) ReadFrom(r io.Reader) (int64, error) {
	lr, limited := r.(*io.LimitedReader)
	var total int64
	for {
		chunk := &io.LimitedReader{R: r, N: downloadChunk}
		if limited {
			if lr.N <= 0 {
				return total, nil
			}
			chunk = &io.LimitedReader{R: lr.R, N: min(lr.N, downloadChunk)}
		}
		want := chunk.N
		w.extend()
		n, err := io.Copy(w.ResponseWriter, chunk)
		total += n
		if limited {
			lr.N -= n
		}
		if err != nil || n < want {
			return total, err
		}
	}
}

// Flush implements http.Flusher.
func (w *progressWriter) Flush() { _ = w.rc.Flush() }

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *progressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
