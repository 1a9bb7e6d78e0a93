package imagewriter

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
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
	// DisallowMD5 refuses MD5 (Ironic's agent_md5_checksum_enable=false).
	DisallowMD5 bool
}

// ResolveChecksum picks the expected checksum the way IPA does (contract
// §6.2): os_hash_algo + os_hash_value when both are set, else the legacy
// checksum whose algorithm follows from its length (32 md5, 64 sha256, 128
// sha512). A checksum that is a URL is refused here; ResolveChecksumURL
// handles those.
func ResolveChecksum(osHashAlgo, osHashValue, legacy string, opts ChecksumOptions) (Checksum, error) {
	var c Checksum
	switch {
	case osHashAlgo != "" && osHashValue != "":
		c = Checksum{Algo: strings.ToLower(osHashAlgo), Value: strings.ToLower(strings.TrimSpace(osHashValue))}
	case legacy != "":
		v := strings.ToLower(strings.TrimSpace(legacy))
		if strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://") || strings.HasPrefix(v, "file://") {
			return c, fmt.Errorf("%w: checksum file URLs are not supported here: %s", ErrChecksum, legacy)
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
	if c.Algo == "md5" && opts.DisallowMD5 {
		return c, fmt.Errorf("%w: MD5 checksums are disabled by the conductor", ErrChecksum)
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
