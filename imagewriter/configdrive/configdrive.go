// Package configdrive turns Ironic's configdrive parameter (contract §6.4)
// into the config drive image to write: base64 of a gzipped ISO 9660
// image, a raw ISO, or an http(s) URL serving either, at most MaxSize bytes
// once decoded.
package configdrive

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/rivetmetal/rivet/imagewriter/source"
)

// MaxSize is the largest decoded config drive accepted (64 MiB).
const MaxSize = 64 << 20

// ErrInvalid: the config drive cannot be decoded or is too large.
var ErrInvalid = errors.New("invalid config drive")

// IsURL reports whether the parameter is a URL to fetch.
func IsURL(s string) bool {
	s = strings.TrimSpace(s)
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// Decode decodes the parameter's bytes: base64 when they are base64 (else
// they are taken as they are), then gunzipped when gzipped.
func Decode(data []byte) ([]byte, error) {
	trimmed := bytes.Join(bytes.Fields(data), nil)
	raw := data
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(string(trimmed)); err == nil && len(trimmed) > 0 {
			raw = b
			break
		}
	}
	if bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
		z, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %w", ErrInvalid, err)
		}
		defer z.Close()
		out, err := io.ReadAll(io.LimitReader(z, MaxSize+1))
		if err != nil {
			return nil, fmt.Errorf("%w: gunzip: %w", ErrInvalid, err)
		}
		raw = out
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(raw) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes once decoded", ErrInvalid, MaxSize)
	}
	return raw, nil
}

// Fetch downloads a config drive from a URL with src's client, headers and
// retry policy, and decodes it.
func Fetch(ctx context.Context, src source.Source, url string) ([]byte, error) {
	src.URLs = []string{strings.TrimSpace(url)}
	st, err := src.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: fetching %s: %w", ErrInvalid, source.Redact(url), err)
	}
	defer st.Close()
	// base64 of a 64 MiB gzip is under 4/3 × 64 MiB; allow for newlines.
	body, err := io.ReadAll(io.LimitReader(st, MaxSize*3/2))
	if err != nil {
		return nil, fmt.Errorf("%w: fetching %s: %w", ErrInvalid, source.Redact(url), err)
	}
	if len(body) >= MaxSize*3/2 {
		return nil, fmt.Errorf("%w: %s serves more than %d bytes", ErrInvalid, source.Redact(url), MaxSize*3/2)
	}
	return Decode(body)
}

// Label returns the volume label of an ISO 9660 image ("config-2" for a
// config drive), or "" when b is not one.
func Label(b []byte) string {
	const pvd = 16 * 2048
	if len(b) < pvd+72 || string(b[pvd+1:pvd+6]) != "CD001" {
		return ""
	}
	return strings.TrimRight(string(b[pvd+40:pvd+72]), " \x00")
}
