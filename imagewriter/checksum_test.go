package imagewriter

import (
	"errors"
	"strings"
	"testing"
)

func TestResolveChecksum(t *testing.T) {
	md5v := strings.Repeat("a", 32)
	sha256v := strings.Repeat("b", 64)
	sha512v := strings.Repeat("c", 128)
	cases := []struct {
		algo, val, legacy string
		opts              ChecksumOptions
		want              Checksum
		err               string
	}{
		{"sha256", sha256v, md5v, ChecksumOptions{}, Checksum{"sha256", sha256v}, ""},
		{"SHA512", strings.ToUpper(sha512v), "", ChecksumOptions{}, Checksum{"sha512", sha512v}, ""},
		{"", "", md5v, ChecksumOptions{AllowMD5: true}, Checksum{"md5", md5v}, ""},
		{"", "", sha256v, ChecksumOptions{}, Checksum{"sha256", sha256v}, ""},
		{"", "", sha512v, ChecksumOptions{}, Checksum{"sha512", sha512v}, ""},
		{"sha256", "", md5v, ChecksumOptions{AllowMD5: true}, Checksum{"md5", md5v}, ""}, // both os_hash fields needed
		{"", "", md5v, ChecksumOptions{}, Checksum{}, "MD5"},
		{"MD5", md5v, "", ChecksumOptions{}, Checksum{}, "MD5"},
		{"md5", md5v, "", ChecksumOptions{AllowMD5: true}, Checksum{"md5", md5v}, ""},
		{"", "", "abc", ChecksumOptions{}, Checksum{}, "3-character"},
		{"", "", "", ChecksumOptions{}, Checksum{}, "no checksum"},
		{"whirlpool", sha512v, "", ChecksumOptions{}, Checksum{}, "unsupported"},
		{"sha256", md5v, "", ChecksumOptions{}, Checksum{}, "not a sha256 digest"},
		{"sha256", strings.Repeat("z", 64), "", ChecksumOptions{}, Checksum{}, "not a sha256 digest"},
		{"", "", "http://example.com/SHA256SUMS", ChecksumOptions{}, Checksum{}, "URL"},
	}
	for _, c := range cases {
		got, err := ResolveChecksum(c.algo, c.val, c.legacy, c.opts)
		if c.err != "" {
			if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ResolveChecksum(%q,%q,%q) = %v, want ErrChecksum with %q", c.algo, c.val, c.legacy, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ResolveChecksum(%q,%q,%q) = %v, %v; want %v", c.algo, c.val, c.legacy, got, err, c.want)
		}
	}
}
