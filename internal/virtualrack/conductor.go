package virtualrack

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Username is the API user the rack makes.
const Username = "rack-admin"

// conductorStopTimeout bounds the conductor's shutdown after SIGINT.
const conductorStopTimeout = 20 * time.Second

// conductorProc is the conductor running in the namespace.
type conductorProc struct {
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
	err    error // set before exited is closed
}

// writeUserFile makes the rack's API user: a random password, its bcrypt
// hash in an htpasswd file only the owner reads.
func writeUserFile(path string) (password string, err error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("virtualrack: password: %w", err)
	}
	password = base64.RawURLEncoding.EncodeToString(b)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("virtualrack: password hash: %w", err)
	}
	if err := os.WriteFile(path, []byte(Username+":"+string(hash)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("virtualrack: user file: %w", err)
	}
	return password, nil
}

// conductorArgs are the conductor's flags in the rack.
func (r *Rack) conductorArgs(userFile string) []string {
	lo, hi := r.plan.dhcpRange()
	args := []string{
		"--listen", r.apiAddr(),
		"--api-url", r.APIURL,
		"--state-dir", filepath.Join(r.cfg.Dir, "conductor"),
		"--deploy-kernel", r.cfg.DeployKernel,
		"--deploy-ramdisk", r.cfg.DeployRamdisk,
		"--boot-interface", provBridge,
		"--boot-server-address", r.plan.conductorProv().String(),
		"--dhcp-mode", "full",
		"--dhcp-range", lo.String() + "," + hi.String(),
		"--auth-strategy", "http_basic",
		"--http-basic-auth-user-file", userFile,
		"--ramdisk-heartbeat-timeout", r.cfg.HeartbeatTimeout.String(),
		fmt.Sprintf("--automated-clean=%t", r.cfg.AutomatedClean),
	}
	if r.cfg.ImageDir != "" {
		args = append(args, "--image-dir", r.cfg.ImageDir)
	}
	return append(args, r.cfg.ConductorArgs...)
}

// startConductor runs the conductor in the namespace and waits for its
// API.
func (r *Rack) startConductor(ctx context.Context) error {
	r.APIURL = "http://" + r.apiAddr()
	userFile := filepath.Join(r.cfg.Dir, "htpasswd")
	pw, err := writeUserFile(userFile)
	if err != nil {
		return err
	}
	r.Username, r.Password = Username, pw
	r.api = newAPIClient(r.Netns, r.APIURL, r.Username, r.Password)

	logf, err := os.OpenFile(r.ConductorLog(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("virtualrack: conductor log: %w", err)
	}
	var out io.Writer = logf
	if r.cfg.ConductorOutput != nil {
		out = io.MultiWriter(logf, r.cfg.ConductorOutput)
	}
	args := append([]string{"netns", "exec", r.Netns, r.cfg.Conductor}, r.conductorArgs(userFile)...)
	cmd := exec.Command(r.ip, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = r.cfg.Dir
	// Its own process group: a terminal's Ctrl-C reaches the rack, which
	// then stops the conductor itself, in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("virtualrack: start the conductor: %w", err)
	}
	c := &conductorProc{cmd: cmd, log: logf, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	r.conductor = c
	r.log.Info("conductor started", "pid", cmd.Process.Pid, "api", r.APIURL, "log", r.ConductorLog())
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := r.api.ready(wctx, c.exited); err != nil {
		return fmt.Errorf("virtualrack: %w (see %s)", err, r.ConductorLog())
	}
	return nil
}

// stop asks the conductor to exit (SIGINT), and kills it if it has not
// within conductorStopTimeout.
func (c *conductorProc) stop() error {
	defer c.log.Close()
	select {
	case <-c.exited:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.exited:
		return nil
	case <-time.After(conductorStopTimeout):
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
	return errors.New("virtualrack: the conductor did not stop within 20s of SIGINT; killed")
}
