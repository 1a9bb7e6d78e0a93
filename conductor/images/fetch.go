package images

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cavaliergopher/grab/v3"

	"github.com/rivetmetal/rivet/conductor/errdefs"
	"github.com/rivetmetal/rivet/conductor/hostpath"
)

// download fetches the image into <name>.part, verifies it and renames it
// to name. The partial file is removed when the download was stopped
// (ctx) or refused (too large, no room, wrong checksum); after a network
// failure it stays, and the next download resumes it.
func (c *Cache) download(ctx context.Context, img Image, name string) error {
	src := redactURL(img.Source)
	h, err := newHash(img.Algo)
	if err != nil {
		return errdefs.InvalidArgument("image %s: %v", src, err)
	}
	want, _ := hex.DecodeString(img.Checksum)
	part := name + ".part"
	start := time.Now()
	c.expire()
	u, err := url.Parse(img.Source)
	if err != nil {
		return errdefs.InvalidArgument("Invalid image_source %s", src)
	}
	var size int64
	switch strings.ToLower(u.Scheme) {
	case "file":
		size, err = c.copyLocal(ctx, img.Source, name, part, h, want)
	case "http", "https":
		size, err = c.fetchHTTP(ctx, img.Source, name, part, h, want)
	default:
		return errdefs.InvalidArgument("Image source %s is neither http(s):// nor file://", src)
	}
	if err != nil {
		var refused *refusedDownload
		if ctx.Err() != nil || errors.As(err, &refused) || errors.Is(err, errdefs.ErrInvalidArgument) || errors.Is(err, errdefs.ErrUnavailable) {
			if rerr := c.root.Remove(part); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				c.log.Warn("removing a partial image download failed", "file", part, "error", rerr)
			}
		}
		if ctx.Err() != nil {
			c.log.Info("image download stopped; partial file removed", "source", src, "reason", context.Cause(ctx))
			return fmt.Errorf("image cache: %s: download stopped: %w", src, ctx.Err())
		}
		return fmt.Errorf("image cache: %s: %w", src, err)
	}
	if err := c.root.Rename(part, name); err != nil {
		return fmt.Errorf("image cache: %s: %w", src, err)
	}
	c.log.Info("image cached and verified", "source", src, "name", name, "bytes", size,
		"algo", img.Algo, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// refusedDownload is a download the cache refused for its size: the
// source's own (more than MaxSize, or more than it said), or no room.
type refusedDownload struct{ err error }

func (r *refusedDownload) Error() string { return r.err.Error() }
func (r *refusedDownload) Unwrap() error { return r.err }

func (c *Cache) errTooBig(src string, size int64) error {
	return &refusedDownload{errdefs.InvalidArgument(
		"Image %s is %d bytes, more than the conductor's image cache holds (--image-cache-max-size %d bytes).",
		redactURL(src), size, c.cfg.MaxSize)}
}

// fetchHTTP downloads src to part with grab, resuming what is there, and
// verifies the whole file against want. The size the server gives is
// checked and room made for it before the body is read; the body is cut
// off past that size (or past MaxSize when the server gives none).
func (c *Cache) fetchHTTP(ctx context.Context, src, name, part string, h hash.Hash, want []byte) (int64, error) {
	budget := new(atomic.Int64)
	budget.Store(c.cfg.MaxSize)
	ctx = context.WithValue(ctx, budgetKey{}, budget)
	req, err := grab.NewRequest(filepath.Join(c.dir, part), src)
	if err != nil {
		return 0, errdefs.InvalidArgument("Invalid image_source %s", redactURL(src))
	}
	req = req.WithContext(ctx)
	req.SetChecksum(h, want, true)
	req.BeforeCopy = func(resp *grab.Response) error {
		total := resp.Size()
		if total > c.cfg.MaxSize {
			return c.errTooBig(src, total)
		}
		// A server that does not say (total < 0) gets the room there is.
		granted, err := c.reserve(name, total)
		if err != nil {
			return err
		}
		budget.Store(granted - resp.BytesComplete())
		return nil
	}
	resp := c.client.Do(req)
	if err := resp.Err(); err != nil {
		var tooBig *bodyTooLarge
		switch {
		case errors.Is(err, grab.ErrBadChecksum):
			return 0, errdefs.InvalidArgument("Image checksum mismatch: the downloaded image does not match its checksum")
		case errors.As(err, &tooBig):
			if tooBig.declared >= 0 {
				return 0, c.errTooBig(src, tooBig.declared+resp.BytesComplete())
			}
			return 0, &refusedDownload{errdefs.InvalidArgument(
				"Image %s sent more than the %d bytes the conductor's image cache allowed for it (its stated size, or the room in the cache under --image-cache-max-size).",
				redactURL(src), tooBig.limit)}
		}
		return 0, fmt.Errorf("download: %w", redactErr(err))
	}
	if resp.DidResume {
		c.log.Info("image download resumed from a partial file", "source", redactURL(src))
	}
	return resp.Size(), nil
}

// copyLocal copies a file:// source, opened through the allowed
// directories, to part, hashing it, and checks the sum. Its size is
// checked and room made before anything is copied, and the copy stops if
// the file grows meanwhile.
func (c *Cache) copyLocal(ctx context.Context, src, name, part string, h hash.Hash, want []byte) (int64, error) {
	if c.cfg.Files == nil {
		return 0, errdefs.InvalidArgument("Image source %s is a file:// URL, but this conductor allows no host files (--file-url-allowed-paths is empty).", redactURL(src))
	}
	p, err := hostpath.FromFileURL(src)
	if err != nil {
		return 0, err
	}
	in, err := c.cfg.Files.Open(p)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", p, err)
	}
	size := st.Size()
	if size > c.cfg.MaxSize {
		return 0, c.errTooBig(src, size)
	}
	if _, err := c.reserve(name, size); err != nil {
		return 0, err
	}
	out, err := c.root.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(ctxReader{ctx, in}, size+1))
	if err == nil && n != size {
		err = &refusedDownload{errdefs.InvalidArgument("Image source file %s changed size while it was copied (%d bytes, then %d).", p, size, n)}
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && !bytes.Equal(h.Sum(nil), want) {
		err = errdefs.InvalidArgument("Image checksum mismatch: %s does not match its checksum", p)
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// Read implements io.Reader.
func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
