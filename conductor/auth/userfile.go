package auth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Role is what an authenticated user may do.
type Role string

// The roles. A user file without a roles file makes every user an admin
// (Ironic's http_basic has no roles); with a roles file, users it does
// not name are readers.
const (
	// RoleAdmin may do everything.
	RoleAdmin Role = "admin"
	// RoleReader may only read: GET and HEAD.
	RoleReader Role = "reader"
)

// Allows reports whether the role may send a request with this method.
func (r Role) Allows(method string) bool {
	switch r {
	case RoleAdmin:
		return true
	case RoleReader:
		return method == "GET" || method == "HEAD"
	}
	return false
}

// maxFileSize caps the user and roles files (about 50,000 bcrypt entries).
const maxFileSize = 4 << 20

// bcryptPrefixes are the hash kinds accepted, as in Ironic: $2y$ (Apache
// htpasswd -B), $2a$ and $2b$.
var bcryptPrefixes = []string{"$2y$", "$2a$", "$2b$"}

// user is one entry of the user file.
type user struct {
	hash []byte
	role Role
}

// Users is a parsed user file with the roles applied.
type Users struct {
	byName map[string]user
	// maxCost is the highest bcrypt cost in the file.
	maxCost int
}

// Len is the number of users.
func (u *Users) Len() int { return len(u.byName) }

// Role is the role of a user, and false when there is no such user.
func (u *Users) Role(name string) (Role, bool) {
	e, ok := u.byName[name]
	return e.role, ok
}

// ParseUserFile parses an Apache htpasswd file (name is used in errors):
// one USER:HASH entry a line, blank lines and lines starting with # are
// skipped, surrounding white space is ignored. Every hash must be bcrypt
// ($2y$, $2a$ or $2b$, as htpasswd -B writes); any other kind, a
// malformed line or a user named twice is an error naming the line.
// Every user gets the admin role; see ApplyRoles.
func ParseUserFile(r io.Reader, name string) (*Users, error) {
	u := &Users{byName: map[string]user{}}
	err := eachLine(r, name, func(no int, line string) error {
		login, hash, ok := strings.Cut(line, ":")
		if !ok || login == "" || hash == "" {
			return fmt.Errorf("%s:%d: not a USER:HASH entry", name, no)
		}
		if !hasBcryptPrefix(hash) {
			return fmt.Errorf("%s:%d: user %q: only bcrypt hashes ($2y$, $2a$, $2b$; htpasswd -B) are supported", name, no, login)
		}
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return fmt.Errorf("%s:%d: user %q: malformed bcrypt hash: %w", name, no, login, err)
		}
		if _, dup := u.byName[login]; dup {
			return fmt.Errorf("%s:%d: user %q is listed twice", name, no, login)
		}
		u.byName[login] = user{hash: []byte(hash), role: RoleAdmin}
		u.maxCost = max(u.maxCost, cost)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// ApplyRoles reads a roles file (name is used in errors) and sets the
// users' roles: one USER:ROLE entry a line (ROLE is admin or reader),
// blank lines and lines starting with # skipped. Users the file does not
// name become readers. It returns the names the roles file lists that the
// user file does not have (not an error: the user may be added later).
// On error the users are left unchanged.
func (u *Users) ApplyRoles(r io.Reader, name string) (unknown []string, err error) {
	roles := map[string]Role{}
	err = eachLine(r, name, func(no int, line string) error {
		login, role, ok := strings.Cut(line, ":")
		login, role = strings.TrimSpace(login), strings.TrimSpace(role)
		if !ok || login == "" {
			return fmt.Errorf("%s:%d: not a USER:ROLE entry", name, no)
		}
		switch Role(role) {
		case RoleAdmin, RoleReader:
		default:
			return fmt.Errorf("%s:%d: user %q: unknown role %q (want %s or %s)", name, no, login, role, RoleAdmin, RoleReader)
		}
		if _, dup := roles[login]; dup {
			return fmt.Errorf("%s:%d: user %q is listed twice", name, no, login)
		}
		roles[login] = Role(role)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for login, e := range u.byName {
		e.role = RoleReader
		if r, ok := roles[login]; ok {
			e.role = r
		}
		u.byName[login] = e
	}
	for login := range roles {
		if _, ok := u.byName[login]; !ok {
			unknown = append(unknown, login)
		}
	}
	return unknown, nil
}

func hasBcryptPrefix(hash string) bool {
	for _, p := range bcryptPrefixes {
		if strings.HasPrefix(hash, p) {
			return true
		}
	}
	return false
}

// eachLine calls fn with every line that is not blank or a comment,
// trimmed, and its 1-based number. More than maxFileSize bytes is an
// error.
func eachLine(r io.Reader, name string, fn func(no int, line string) error) error {
	data, err := io.ReadAll(io.LimitReader(r, maxFileSize+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxFileSize {
		return fmt.Errorf("%s: larger than %d bytes", name, maxFileSize)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxFileSize)
	for no := 1; sc.Scan(); no++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(no, line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// loadFiles reads the user file and, when rolesFile is not empty, applies
// the roles file. It returns the users and the names the roles file lists
// that the user file lacks.
func loadFiles(userFile, rolesFile string) (*Users, []string, error) {
	if userFile == "" {
		return nil, nil, errors.New("user file: no path")
	}
	f, err := os.Open(userFile)
	if err != nil {
		return nil, nil, fmt.Errorf("user file: %w", err)
	}
	defer f.Close()
	u, err := ParseUserFile(f, userFile)
	if err != nil {
		return nil, nil, fmt.Errorf("user file: %w", err)
	}
	if rolesFile == "" {
		return u, nil, nil
	}
	rf, err := os.Open(rolesFile)
	if err != nil {
		return nil, nil, fmt.Errorf("roles file: %w", err)
	}
	defer rf.Close()
	unknown, err := u.ApplyRoles(rf, rolesFile)
	if err != nil {
		return nil, nil, fmt.Errorf("roles file: %w", err)
	}
	return u, unknown, nil
}
