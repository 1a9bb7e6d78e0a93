package source

import (
	"context"
	"errors"
	"fmt"
	"github.com/rivetmetal/rivet/internal/pause"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Stream is an opened image: an io.Reader over the whole image, in order,
// that resumes after a dropped connection, and an io.ReaderAt for random
// reads. Read is not safe for concurrent use; ReadAt is.
type Stream struct {
	src    *Source
	ctx    context.Context
	url    string
	size   int64
	val    validator
	body   io.ReadCloser
	file   *os.File
	cancel func()
	// abort cancels the stream's lifetime context; safe at any time.
	abort func()
	// limit is the MaxDuration bound (random reads too); stopLimit
	// releases its timer.
	limit     context.Context
	stopLimit context.CancelFunc
	off       int64
	// rangeOK is true when the server said it serves byte ranges.
	rangeOK bool
	// resumes counts how often the body was resumed.
	resumes int
	closed  bool
	// pending is a body error seen together with data, reported on the
	// next Read.
	pending error
}

// URL is the URL that serves the image.
func (st *Stream) URL() string { return st.url }

// Size is the image size in bytes, -1 when the server did not say.
func (st *Stream) Size() int64 { return st.size }

// Offset is the number of bytes Read has handed out.
func (st *Stream) Offset() int64 { return st.off }

// RangeOK reports whether the source serves byte ranges (a file, or a
// server that answered with Accept-Ranges: bytes or 206).
func (st *Stream) RangeOK() bool { return st.rangeOK }

// Resumes is how many times the body was reopened after a failure.
func (st *Stream) Resumes() int { return st.resumes }

// Read reads the next bytes of the image. A body that fails or ends early
// is reopened from the current offset with a Range request, up to
// Retry.Attempts times without progress; when that does not bring the
// missing bytes, the error wraps ErrTruncated (the image ended early) or
// ErrDownload (the server failed). io.EOF is returned only at the image's
// declared end, or at a clean end when the size is unknown.
func (st *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	failures := 0
	for {
		if st.closed {
			return 0, fmt.Errorf("%w: %s: read after close", ErrDownload, Redact(st.url))
		}
		var n int
		var err error
		if st.pending != nil {
			err, st.pending = st.pending, nil
		} else {
			n, err = st.body.Read(p)
		}
		st.off += int64(n)
		if st.size >= 0 && st.off > st.size {
			return n, fmt.Errorf("%w: %s sent more than its %d bytes", ErrTruncated, Redact(st.url), st.size)
		}
		if n > 0 {
			// Hand out the bytes; an error (or an early EOF) is dealt
			// with on the next Read.
			st.pending = err
			return n, nil
		}
		if err == nil {
			continue
		}
		if err == io.EOF && (st.size < 0 || st.off == st.size) {
			return 0, io.EOF
		}
		if st.ctx.Err() != nil {
			return 0, fmt.Errorf("%w: %s: %w", ErrDownload, Redact(st.url), context.Cause(st.ctx))
		}
		cause := err
		if err == io.EOF {
			cause = io.ErrUnexpectedEOF
		}
		if failures >= st.src.Retry.attempts() || isFatal(cause) {
			return 0, st.finalError(cause)
		}
		if failures > 0 {
			if err := pause.For(st.ctx, st.src.Retry.interval()); err != nil {
				return 0, fmt.Errorf("%w: %s: %w", ErrDownload, Redact(st.url), context.Cause(st.ctx))
			}
		}
		failures++
		st.src.log().Warn("image stream broke, resuming with a Range request",
			"url", Redact(st.url), "offset", st.off, "size", st.size, "try", failures, "error", cause)
		if rerr := st.reopen(); rerr != nil {
			if isFatal(rerr) || failures >= st.src.Retry.attempts() {
				return 0, st.finalError(fmt.Errorf("%w (resume failed: %w)", cause, rerr))
			}
			// Keep the broken body: the next loop reads its error again.
			st.body = errBody{cause}
		}
	}
}

func (st *Stream) finalError(cause error) error {
	if errors.Is(cause, io.ErrUnexpectedEOF) {
		if st.size >= 0 {
			return fmt.Errorf("%w: %s ended after %d of %d bytes: %w", ErrTruncated, Redact(st.url), st.off, st.size, cause)
		}
		return fmt.Errorf("%w: %s ended after %d bytes: %w", ErrTruncated, Redact(st.url), st.off, cause)
	}
	return fmt.Errorf("%w: reading %s at byte %d: %w", ErrDownload, Redact(st.url), st.off, cause)
}

// reopen replaces the body with one starting at the current offset.
func (st *Stream) reopen() error {
	st.body.Close()
	st.cancel()
	nst, err := st.src.openAt(st.ctx, st.url, st.off, st)
	if err != nil {
		return err
	}
	st.body, st.cancel, st.file = nst.body, nst.cancel, nst.file
	if nst.rangeOK {
		st.rangeOK = true
	}
	st.resumes++
	return nil
}

// Abort makes a Read blocked in another goroutine, and every later one,
// fail at once. Unlike Close it may be called concurrently with Read.
func (st *Stream) Abort() { st.abort() }

// Close releases the connection or file.
func (st *Stream) Close() error {
	if st.closed {
		return nil
	}
	st.closed = true
	err := st.body.Close()
	st.cancel()
	st.abort()
	return err
}

type errBody struct{ err error }

func (e errBody) Read([]byte) (int, error) { return 0, e.err }
func (e errBody) Close() error             { return nil }

// ReadAt reads len(p) bytes at off with a Range request (or from the file),
// retrying like Read; the stream's context bounds it.
func (st *Stream) ReadAt(p []byte, off int64) (int, error) {
	return st.ReadAtContext(st.ctx, p, off)
}

// ReadAtContext is ReadAt under ctx. Reading past the image's end returns
// the bytes there are and io.EOF; a server that does not serve byte ranges
// fails with ErrDownload.
func (st *Stream) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if st.size >= 0 && off >= st.size {
		return 0, io.EOF
	}
	want := len(p)
	if st.size >= 0 && off+int64(want) > st.size {
		want = int(st.size - off)
	}
	// MaxDuration bounds random reads too.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(st.limit, func() { cancel(context.Cause(st.limit)) })()
	var last error
	for try := 0; try <= st.src.Retry.attempts(); try++ {
		if try > 0 {
			if err := pause.For(ctx, st.src.Retry.interval()); err != nil {
				return 0, fmt.Errorf("%w: %s: %w", ErrDownload, Redact(st.url), context.Cause(ctx))
			}
		}
		n, err := st.readRange(ctx, p[:want], off)
		if err == nil {
			if want < len(p) {
				return n, io.EOF
			}
			return n, nil
		}
		last = err
		if isFatal(err) || ctx.Err() != nil {
			break
		}
	}
	return 0, fmt.Errorf("%w: reading %d bytes of %s at %d: %w", ErrDownload, want, Redact(st.url), off, last)
}

func (st *Stream) readRange(ctx context.Context, p []byte, off int64) (int, error) {
	if st.file != nil || st.isFileURL() {
		f, err := os.Open(st.fileName())
		if err != nil {
			return 0, fatal(err)
		}
		defer f.Close()
		n, err := f.ReadAt(p, off)
		if err == io.EOF && n < len(p) {
			return n, fatal(io.ErrUnexpectedEOF)
		}
		return n, err
	}
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, st.url, nil)
	if err != nil {
		return 0, fatal(err)
	}
	for k, v := range st.src.Header {
		req.Header[k] = v
	}
	req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(off+int64(len(p))-1, 10))
	if ir := st.val.ifRange(); ir != "" {
		req.Header.Set("If-Range", ir)
	}
	resp, err := st.src.client().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		if resp.StatusCode == http.StatusOK {
			return 0, fatal(fmt.Errorf("%w: GET %s with Range answered HTTP %s", ErrNoRanges, Redact(st.url), resp.Status))
		}
		err := fmt.Errorf("GET %s with Range: HTTP %s", Redact(st.url), resp.Status)
		if resp.StatusCode < 500 {
			err = fatal(err)
		}
		return 0, err
	}
	start, total, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err != nil || start != off || (st.size >= 0 && total >= 0 && total != st.size) {
		return 0, fatal(fmt.Errorf("GET %s with Range from %d: unexpected Content-Range %q", Redact(st.url), off, resp.Header.Get("Content-Range")))
	}
	body := newGapReader(resp.Body, st.src.gap(), cancel)
	defer body.stop()
	return io.ReadFull(body, p)
}

func (st *Stream) isFileURL() bool { return len(st.url) > 7 && st.url[:7] == "file://" }

func (st *Stream) fileName() string {
	if st.file != nil {
		return st.file.Name()
	}
	return st.url[len("file://"):]
}

// gapReader fails a read that gets no data for longer than gap, so a server
// that stops sending cannot hang a deploy. Slow data that keeps flowing is
// fine.
type gapReader struct {
	r      io.ReadCloser
	gap    time.Duration
	cancel func()
	mu     sync.Mutex
	timer  *time.Timer
	fired  bool
}

func newGapReader(r io.ReadCloser, gap time.Duration, cancel func()) *gapReader {
	g := &gapReader{r: r, gap: gap, cancel: cancel}
	g.timer = time.AfterFunc(gap, g.fire)
	return g
}

func (g *gapReader) fire() {
	g.mu.Lock()
	g.fired = true
	g.mu.Unlock()
	g.cancel()
}

func (g *gapReader) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if n > 0 {
		g.timer.Reset(g.gap)
	}
	if err != nil && err != io.EOF {
		g.mu.Lock()
		fired := g.fired
		g.mu.Unlock()
		if fired {
			return n, fmt.Errorf("no data for %s: %w", g.gap, err)
		}
	}
	return n, err
}

func (g *gapReader) stop() { g.timer.Stop() }

func (g *gapReader) Close() error {
	g.stop()
	return g.r.Close()
}
