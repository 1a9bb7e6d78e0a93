package auth

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// htpasswdLine was written by Debian's `htpasswd -nbB -C 5 operator
// 'correct horse'` (apache2-utils 2.4): Apache's $2y$ variant.
const htpasswdLine = "operator:$2y$05$XKIfbQPCZzwKWKjJb4AXNuwqoPDgiJG4btvDAUhDJmPY45zVRZfgG"

func hashOf(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestParseUserFile(t *testing.T) {
	h := hashOf(t, "pw")
	// $2a$ and $2b$ are the same algorithm; Go writes $2a$.
	h2b := "$2b$" + strings.TrimPrefix(hashOf(t, "pw2"), "$2a$")
	file := "# users of the lab conductor\n\n" + htpasswdLine + "\n  alice:" + h + "  \n\tbob:" + h2b + "\n"
	u, err := ParseUserFile(strings.NewReader(file), "users")
	if err != nil {
		t.Fatal(err)
	}
	if u.Len() != 3 {
		t.Fatalf("%d users, want 3", u.Len())
	}
	for _, name := range []string{"operator", "alice", "bob"} {
		if r, ok := u.Role(name); !ok || r != RoleAdmin {
			t.Errorf("user %s: role %q %v, want admin (no roles file)", name, r, ok)
		}
	}
	if _, ok := u.Role("carol"); ok {
		t.Error("carol found")
	}
	if u.maxCost != 5 {
		t.Errorf("max cost %d, want 5 (the htpasswd line's)", u.maxCost)
	}
	if err := bcrypt.CompareHashAndPassword(u.byName["operator"].hash, []byte("correct horse")); err != nil {
		t.Errorf("the htpasswd -B hash does not verify: %v", err)
	}
}

func TestParseUserFileRefusals(t *testing.T) {
	h := hashOf(t, "pw")
	for _, tc := range []struct{ name, file, want string }{
		// The other kinds htpasswd writes: -m, -s, -d, -p, -2.
		{"md5", "ok:" + h + "\nu1:$apr1$Xlkx8qQf$LMtCdudNzQnY2d9vAwaBC1\n", `users:2: user "u1": only bcrypt hashes`},
		{"sha1", "u2:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=\n", `users:1: user "u2": only bcrypt hashes`},
		{"crypt", "# c\nu3:MuSHwfq/kimA2\n", `users:2: user "u3": only bcrypt hashes`},
		{"plain", "u4:pw\n", `users:1: user "u4": only bcrypt hashes`},
		{"sha256crypt", "u5:$5$/fYFr5pUWgyJOJ/r$ej5w9TabKzjgq6Mx0HN2G5VtStCJ6qspj/sXCX3FYJ1\n", `users:1: user "u5": only bcrypt hashes`},
		{"no colon", "alice\n", "users:1: not a USER:HASH entry"},
		{"no user", ":" + h + "\n", "users:1: not a USER:HASH entry"},
		{"no hash", "alice:\n", "users:1: not a USER:HASH entry"},
		{"truncated bcrypt", "alice:" + h[:20] + "\n", `users:1: user "alice": malformed bcrypt hash`},
		{"twice", "alice:" + h + "\nalice:" + h + "\n", `users:2: user "alice" is listed twice`},
		{"too big", strings.Repeat("#", maxFileSize+1), "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseUserFile(strings.NewReader(tc.file), "users")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestApplyRoles(t *testing.T) {
	h := hashOf(t, "pw")
	u, err := ParseUserFile(strings.NewReader("alice:"+h+"\nbob:"+h+"\ncarol:"+h+"\n"), "users")
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := u.ApplyRoles(strings.NewReader("# roles\nalice: admin\nbob:reader\ndave:admin\n"), "roles")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(unknown, []string{"dave"}) {
		t.Errorf("unknown = %v, want [dave]", unknown)
	}
	for name, want := range map[string]Role{"alice": RoleAdmin, "bob": RoleReader, "carol": RoleReader} {
		if r, _ := u.Role(name); r != want {
			t.Errorf("%s: role %q, want %q", name, r, want)
		}
	}

	for _, tc := range []struct{ file, want string }{
		{"alice:root\n", `roles:1: user "alice": unknown role "root"`},
		{"alice\n", "roles:1: not a USER:ROLE entry"},
		{"bob:reader\nbob:admin\n", `roles:2: user "bob" is listed twice`},
	} {
		before, _ := u.Role("bob")
		if _, err := u.ApplyRoles(strings.NewReader(tc.file), "roles"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("roles %q: error %v, want %q", tc.file, err, tc.want)
		}
		if after, _ := u.Role("bob"); after != before {
			t.Errorf("a bad roles file changed bob's role to %q", after)
		}
	}
}

func TestRoleAllows(t *testing.T) {
	for _, tc := range []struct {
		role   Role
		method string
		want   bool
	}{
		{RoleAdmin, "GET", true}, {RoleAdmin, "DELETE", true}, {RoleAdmin, "PATCH", true},
		{RoleReader, "GET", true}, {RoleReader, "HEAD", true}, {RoleReader, "POST", false},
		{RoleReader, "PUT", false}, {RoleReader, "PATCH", false}, {RoleReader, "DELETE", false},
		{Role(""), "GET", false},
	} {
		if got := tc.role.Allows(tc.method); got != tc.want {
			t.Errorf("%q allows %s = %v, want %v", tc.role, tc.method, got, tc.want)
		}
	}
}

// TestHtpasswdTool checks a user file written by Apache's htpasswd tool
// itself (-B, bcrypt), as an operator or Metal3's ironic-image makes it.
func TestHtpasswdTool(t *testing.T) {
	bin, err := exec.LookPath("htpasswd")
	if err != nil {
		if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
			t.Fatalf("htpasswd required (RIVET_REQUIRE_E2E=1) but not found: %v", err)
		}
		t.Skip("htpasswd (Debian apache2-utils) not installed; set RIVET_REQUIRE_E2E=1 to make this a failure")
	}
	file := filepath.Join(t.TempDir(), "htpasswd")
	for i, args := range [][]string{
		{"-c", "-b", "-B", "-C", "4", file, "admin", "s3cret: with colon"},
		{"-b", "-B", "-C", "4", file, "viewer", "v1ewer"},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("htpasswd #%d: %v\n%s", i, err, out)
		}
	}
	v, err := NewVerifier(VerifierConfig{UserFile: file, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := v.Verify(t.Context(), "admin", "s3cret: with colon"); err != nil || id.Role != RoleAdmin {
		t.Errorf("admin: %v %v", id, err)
	}
	if _, err := v.Verify(t.Context(), "viewer", "wrong"); err != ErrBadCredentials {
		t.Errorf("viewer with a wrong password: %v", err)
	}
	// A non-bcrypt entry added with htpasswd -m is refused by name.
	if out, err := exec.Command(bin, "-b", "-m", file, "legacy", "pw").CombinedOutput(); err != nil {
		t.Fatalf("htpasswd -m: %v\n%s", err, out)
	}
	if err := v.Reload(); err == nil || !strings.Contains(err.Error(), `:3: user "legacy": only bcrypt hashes`) {
		t.Errorf("reload with an MD5 entry: %v", err)
	}
	if _, err := v.Verify(t.Context(), "viewer", "v1ewer"); err != nil {
		t.Errorf("the users read before stay in force: %v", err)
	}
}
