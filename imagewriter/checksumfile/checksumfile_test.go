package checksumfile

import (
	"errors"
	"strings"
	"testing"
)

const (
	sha256a = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	sha256b = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
	md5a    = "d41d8cd98f00b204e9800998ecf8427e"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name, file, image string
		want              Entry
		err               error
	}{
		{"bare hash", sha256a + "\n", "img.raw", Entry{Value: sha256a}, nil},
		{"bare upper-case hash", strings.ToUpper(md5a), "x", Entry{Value: md5a}, nil},
		{"gnu two spaces", sha256b + "  other.img\n" + sha256a + "  img.qcow2\n", "img.qcow2", Entry{Value: sha256a}, nil},
		{"gnu binary", sha256b + " *other.img\n" + sha256a + " *img.qcow2\n", "img.qcow2", Entry{Value: sha256a}, nil},
		{"gnu one space and ./", sha256a + " ./dir/img.qcow2\n", "img.qcow2", Entry{Value: sha256a}, nil},
		{"bsd centos", "# CentOS-Stream\nSHA256 (other.qcow2) = " + sha256b + "\nSHA256 (img.qcow2) = " + sha256a + "\n", "img.qcow2",
			Entry{Algo: "sha256", Value: sha256a}, nil},
		{"bsd dashed algo", "SHA-512 (img) = " + sha256a, "img", Entry{Algo: "sha512", Value: sha256a}, nil},
		{"pgp signed", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" + sha256a + "  img.raw\n-----BEGIN PGP SIGNATURE-----\nabc\n", "img.raw", Entry{Value: sha256a}, nil},
		{"image from a URL path", sha256a + "  img.raw\n", "/images/v1/img.raw", Entry{Value: sha256a}, nil},
		{"missing", sha256b + "  other.img\n" + sha256a + "  third.img\n", "img.qcow2", Entry{}, ErrNotFound},
		{"empty", "", "img", Entry{}, ErrNotFound},
		{"name with spaces", sha256a + "  my image.raw\n", "my image.raw", Entry{Value: sha256a}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(c.file), c.image)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err = %v, want %v", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("Parse = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	big := strings.Repeat(sha256b+"  x\n", MaxSize/60)
	if _, err := Parse(strings.NewReader(big), "img"); err == nil {
		t.Fatal("a checksum file over MaxSize was accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sha256a+"  img.raw\n", "img.raw")
	f.Add("SHA256 (img.qcow2) = "+sha256a+"\n", "img.qcow2")
	f.Add(md5a, "anything")
	f.Add(sha256a+" *a\n"+sha256b+" *b\n", "b")
	f.Fuzz(func(t *testing.T, file, name string) {
		e, err := Parse(strings.NewReader(file), name)
		if err != nil {
			return
		}
		if !isHex(e.Value) || strings.ToLower(e.Value) != e.Value {
			t.Fatalf("Parse returned a non-hex value %q", e.Value)
		}
		if !strings.Contains(strings.ToLower(file), e.Value) {
			t.Fatalf("value %q is not in the file", e.Value)
		}
	})
}
