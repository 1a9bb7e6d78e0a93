package imagewriter

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"path"
	"strings"

	"github.com/rivetmetal/rivet/imagewriter/checksumfile"
)

// Checksum is the expected digest of an image, over the bytes as served.
type Checksum struct {
	// Algo is a hashlib-style name: md5, sha1, sha224, sha256, sha384, sha512.
	Algo string
	// Value is the lowercase hex digest.
	Value string
}

// String renders "algo:value".
func (c Checksum) String() string { return c.Algo + ":" + c.Value }

// ErrMD5 is wrapped (with ErrChecksum) when an MD5 checksum is refused.
var ErrMD5 = errors.New("MD5 checksums are refused: use os_hash_algo/os_hash_value with sha256 or sha512 (MD5 must be allowed explicitly)")

var hashes = map[string]func() hash.Hash{
	"md5":    md5.New,
	"sha1":   sha1.New,
	"sha224": sha256.New224,
	"sha256": sha256.New,
	"sha384": sha512.New384,
	"sha512": sha512.New,
}

// ChecksumOptions tune ResolveChecksum.
type ChecksumOptions struct {
	// AllowMD5 accepts MD5 checksums; by default they are refused (Ironic
	// deprecated them).
	AllowMD5 bool
}

// ResolveChecksum picks the expected checksum the way IPA does (contract
// §6.2): os_hash_algo + os_hash_value when both are set, else the legacy
// checksum whose algorithm follows from its length (32 md5, 64 sha256, 128
// sha512). A checksum that is a URL is refused here; FetchChecksum handles
// those.
func ResolveChecksum(osHashAlgo, osHashValue, legacy string, opts ChecksumOptions) (Checksum, error) {
	var c Checksum
	switch {
	case osHashAlgo != "" && osHashValue != "":
		c = Checksum{Algo: strings.ToLower(osHashAlgo), Value: strings.ToLower(strings.TrimSpace(osHashValue))}
	case legacy != "":
		v := strings.ToLower(strings.TrimSpace(legacy))
		if strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://") || strings.HasPrefix(v, "file://") {
			return c, fmt.Errorf("%w: %s is a checksum file URL: use FetchChecksum", ErrChecksum, legacy)
		}
		algo, ok := map[int]string{32: "md5", 64: "sha256", 128: "sha512"}[len(v)]
		if !ok {
			return c, fmt.Errorf("%w: cannot tell the algorithm of a %d-character checksum %q", ErrChecksum, len(v), legacy)
		}
		c = Checksum{Algo: algo, Value: v}
	default:
		return c, fmt.Errorf("%w: no checksum given (os_hash_algo/os_hash_value or checksum)", ErrChecksum)
	}
	if _, ok := hashes[c.Algo]; !ok {
		return c, fmt.Errorf("%w: unsupported hash algorithm %q", ErrChecksum, c.Algo)
	}
	if c.Algo == "md5" && !opts.AllowMD5 {
		return c, fmt.Errorf("%w: %w", ErrChecksum, ErrMD5)
	}
	if _, err := hex.DecodeString(c.Value); err != nil || len(c.Value) != hashes[c.Algo]().Size()*2 {
		return c, fmt.Errorf("%w: %q is not a %s digest", ErrChecksum, c.Value, c.Algo)
	}
	return c, nil
}

// newHash returns a fresh hash for the checksum's algorithm.
func (c Checksum) newHash() (hash.Hash, error) {
	f, ok := hashes[c.Algo]
	if !ok {
		return nil, fmt.Errorf("%w: unsupported hash algorithm %q", ErrChecksum, c.Algo)
	}
	return f(), nil
}

// IsChecksumURL reports whether a legacy checksum is the URL of a checksum
// file.
func IsChecksumURL(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "file://")
}

// FetchChecksum downloads the checksum file at checksumURL through src
// (same client, headers and retries as the image) and returns the checksum
// it gives for the image at imageURL, matched by base name (contract
// §6.2). The algorithm is the one the file names, else found from the
// digest's length.
func FetchChecksum(ctx context.Context, src Source, checksumURL, imageURL string, opts ChecksumOptions) (Checksum, error) {
	src.URLs = []string{strings.TrimSpace(checksumURL)}
	st, err := src.Open(ctx)
	if err != nil {
		return Checksum{}, fmt.Errorf("%w: fetching the checksum file: %w", ErrChecksum, err)
	}
	defer st.Close()
	name := imageURL
	if u, err := url.Parse(imageURL); err == nil && u.Path != "" {
		name = u.Path
	}
	e, err := checksumfile.Parse(io.LimitReader(st, checksumfile.MaxSize+1), path.Base(name))
	if err != nil {
		return Checksum{}, fmt.Errorf("%w: checksum file %s: %w", ErrChecksum, redact(checksumURL), err)
	}
	if e.Algo != "" {
		return ResolveChecksum(e.Algo, e.Value, "", opts)
	}
	return ResolveChecksum("", "", e.Value, opts)
}
