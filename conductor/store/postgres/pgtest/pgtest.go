// Package pgtest gives tests a real, throwaway PostgreSQL server: Debian's
// server binaries run from a temporary directory, on a loopback port, with
// their unix socket in that directory, as the postgres user when the tests
// run as root (the server refuses root). One server is shared by all the
// tests of a package binary; each test gets a database of its own.
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Run(m)) }
//	func TestX(t *testing.T) { dsn := pgtest.NewDatabase(t); ... }
//
// Without the server binaries the tests skip, saying why, unless
// RIVET_REQUIRE_E2E=1 makes that a failure. RIVET_TEST_POSTGRES_DSN, when
// set, names an existing server (a DSN of a role allowed to create
// databases) to use instead of starting one.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoServer reports that no PostgreSQL server binaries were found.
var ErrNoServer = errors.New("pgtest: PostgreSQL server binaries not found (install them with scripts/install-deps.sh postgres)")

// Server is a running PostgreSQL server started by Start.
type Server struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan error
	// admin is the DSN of the superuser's "postgres" database.
	admin string
}

// BinDir finds the directory of Debian's PostgreSQL server binaries
// (/usr/lib/postgresql/<major>/bin, the newest major first), or the one
// named by RIVET_POSTGRES_BINDIR.
func BinDir() (string, error) {
	if d := os.Getenv("RIVET_POSTGRES_BINDIR"); d != "" {
		return d, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(matches, func(i, j int) bool { return majorOf(matches[i]) > majorOf(matches[j]) })
	for _, m := range matches {
		dir := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNoServer
}

func majorOf(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

// Start initialises a cluster in a new temporary directory and runs a
// server on 127.0.0.1 with settings for tests (no fsync). Stop it with
// Stop, which also removes the directory.
func Start(ctx context.Context) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "rivet-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{dir: dir, done: make(chan error, 1)}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	cred, err := serverCredential(dir)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb %s: %w\n%s", data, err, out)
	}
	var lastErr error
	for range 3 { // a free port can be taken between the probe and the bind
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		if lastErr = s.run(ctx, bin, data, cred); lastErr == nil {
			ok = true
			return s, nil
		}
	}
	return nil, lastErr
}

// serverCredential is who runs the server: the postgres user (owning dir)
// when we are root, nil (ourselves) otherwise.
func serverCredential(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs the postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, fmt.Errorf("pgtest: chown %s: %w", dir, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// run starts the server and waits until it accepts connections.
func (s *Server) run(ctx context.Context, bin, data string, cred *syscall.Credential) error {
	logPath := filepath.Join(s.dir, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close()
	if cred != nil {
		if err := logf.Chown(int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("pgtest: chown %s: %w", logPath, err)
		}
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port="+strconv.Itoa(s.port),
		"-c", "unix_socket_directories="+s.dir,
		"-c", "max_connections=300",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = serverProcAttr(cred)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.cmd = cmd
	s.done = make(chan error, 1)
	go func() { s.done <- cmd.Wait() }()
	s.admin = s.DSN("postgres")

	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, s.admin)
		cancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case werr := <-s.done:
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("pgtest: postgres exited (%v) on port %d:\n%s", werr, s.port, log)
		case <-ctx.Done():
			s.kill()
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("pgtest: postgres on port %d not ready after 60 s: %w", s.port, err)
		}
	}
}

// DSN is the URL of database db on the server, as the superuser.
func (s *Server) DSN(db string) string {
	return (&url.URL{Scheme: "postgres", User: url.User("postgres"),
		Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), Path: "/" + db,
		RawQuery: "sslmode=disable"}).String()
}

// CreateDatabase creates an empty database and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	return createDatabase(ctx, s.admin, name)
}

func createDatabase(ctx context.Context, admin, name string) (string, error) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", fmt.Errorf("pgtest: admin DSN: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// Stop shuts the server down (fast shutdown, then kill after 15 s) and
// removes its directory.
func (s *Server) Stop() error {
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			s.kill()
		}
	}
	return os.RemoveAll(s.dir)
}

func (s *Server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// The shared server of the test binary, started on first use.
var (
	sharedOnce sync.Once
	shared     *Server
	sharedDSN  string // admin DSN, of shared or of RIVET_TEST_POSTGRES_DSN
	sharedErr  error
	dbSeq      atomic.Int64
)

// Run runs a package's tests (TestMain) and stops the shared server, if
// one was started, when they end. It returns m.Run's exit code.
func Run(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop:", err)
		}
	}
	return code
}

// Admin returns the superuser DSN of the shared server, starting it on
// first use. A test that cannot have one is skipped with the reason, or
// failed under RIVET_REQUIRE_E2E=1.
func Admin(t testing.TB) string {
	t.Helper()
	sharedOnce.Do(func() {
		if dsn := os.Getenv("RIVET_TEST_POSTGRES_DSN"); dsn != "" {
			sharedDSN = dsn
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared, sharedErr = Start(ctx)
		if sharedErr == nil {
			sharedDSN = shared.admin
		}
	})
	if sharedErr != nil {
		if os.Getenv("RIVET_REQUIRE_E2E") == "1" {
			t.Fatalf("PostgreSQL needed (RIVET_REQUIRE_E2E=1): %v", sharedErr)
		}
		t.Skipf("no PostgreSQL server: %v", sharedErr)
	}
	return sharedDSN
}

// NewDatabase creates a fresh, empty database on the shared server for
// this test and returns its DSN. The database is left behind; the whole
// server goes away at the end of the run.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := Admin(t)
	name := fmt.Sprintf("rivet_%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dsn, err := createDatabase(ctx, admin, name)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}
