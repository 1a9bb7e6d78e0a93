package ipmisim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// request is one run of the chassis control helper: ipmi_sim's arguments
// ("get power boot", "set power 1", …).
type request struct {
	Args []string `json:"args"`
}

// response is the helper's output and whether it succeeds.
type response struct {
	Output string `json:"output"`
	OK     bool   `json:"ok"`
}

// bootNames maps ipmi_sim's boot values onto the fixture's boot devices:
// ipmi_sim calls the hard-drive selector "default".
var bootNames = map[string]string{"pxe": "pxe", "default": "disk", "cdrom": "cdrom", "bios": "bios", "none": ""}

// chassis is the machine behind the BMC: the caller's process, started
// and stopped on ipmi_sim's chassis commands.
type chassis struct {
	cfg     Config
	console io.Writer
	log     *slog.Logger

	mu     sync.Mutex
	boot   string
	proc   *exec.Cmd
	exited chan struct{} // closed when proc exits
	starts []string
}

func newChassis(cfg Config, console io.Writer, log *slog.Logger) *chassis {
	return &chassis{cfg: cfg, console: console, log: log}
}

// serve answers helper connections until ln is closed.
func (c *chassis) serve(ln net.Listener) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(c.cfg.StopTimeout + 30*time.Second))
			var req request
			if err := json.NewDecoder(io.LimitReader(conn, 64<<10)).Decode(&req); err != nil {
				return
			}
			out, err := c.handle(req.Args)
			resp := response{Output: out, OK: err == nil}
			if err != nil {
				resp.Output = err.Error()
				c.log.Warn("chassis control failed", "args", req.Args, "error", err)
			}
			_ = json.NewEncoder(conn).Encode(resp)
		}()
	}
}

// handle runs one chassis control request, as ipmi_sim's example
// ipmi_sim_chassiscontrol script defines them: "get PARM...", answered
// "PARM:VALUE" per line, and "set PARM VALUE...".
func (c *chassis) handle(args []string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("no operation")
	}
	switch op, parms := args[0], args[1:]; op {
	case "get":
		var b strings.Builder
		for _, p := range parms {
			switch p {
			case "power":
				v := 0
				if c.running() {
					v = 1
				}
				fmt.Fprintf(&b, "power:%d\n", v)
			case "boot":
				v := "none"
				for name, dev := range bootNames {
					if dev != "" && dev == c.bootDevice() {
						v = name
					}
				}
				fmt.Fprintf(&b, "boot:%s\n", v)
			default:
				return "", fmt.Errorf("invalid parameter %q", p)
			}
		}
		return b.String(), nil
	case "set":
		for len(parms) > 0 {
			p := parms[0]
			if len(parms) < 2 {
				return "", fmt.Errorf("no value for parameter %q", p)
			}
			v := parms[1]
			parms = parms[2:]
			var err error
			switch p {
			case "power":
				if v == "1" {
					err = c.powerOn()
				} else {
					err = c.powerOff()
				}
			case "reset":
				// A reset pulse: the machine restarts (and boots the device
				// set now) if it runs.
				if c.running() {
					if err = c.powerOff(); err == nil {
						err = c.powerOn()
					}
				}
			case "boot":
				dev, ok := bootNames[v]
				if !ok {
					return "", fmt.Errorf("invalid boot value %q", v)
				}
				c.mu.Lock()
				c.boot = dev
				c.mu.Unlock()
				c.log.Debug("boot device set", "device", dev)
			case "shutdown":
				err = c.softOff()
			case "identify":
				// The interval follows as a second value.
				if len(parms) > 0 {
					parms = parms[1:]
				}
			default:
				return "", fmt.Errorf("invalid parameter %q", p)
			}
			if err != nil {
				return "", err
			}
		}
		return "", nil
	default:
		return "", fmt.Errorf("unknown operation %q", op)
	}
}

// running says whether the machine runs.
func (c *chassis) running() bool {
	proc, _ := c.machine()
	return proc != nil
}

func (c *chassis) bootDevice() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.boot
}

func (c *chassis) startLog() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.starts...)
}

// powerOn starts the machine with the current boot device unless it runs.
func (c *chassis) powerOn() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		select {
		case <-c.exited:
		default:
			return nil
		}
	}
	if c.cfg.Command == nil {
		return errors.New("no start command")
	}
	argv := c.cfg.Command(c.boot)
	if len(argv) == 0 {
		return errors.New("empty start command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = c.console, c.console
	cmd.Dir = c.cfg.Dir
	// Its own process group, so that stopping it stops what it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		c.log.Debug("machine stopped", "pid", cmd.Process.Pid, "exit", err)
		close(exited)
	}()
	c.proc, c.exited = cmd, exited
	c.starts = append(c.starts, c.boot)
	c.log.Debug("machine started", "pid", cmd.Process.Pid, "boot_device", c.boot, "argv", argv)
	return nil
}

// machine returns the machine's process and the channel closed when it
// exits, or nil when no machine runs.
func (c *chassis) machine() (*exec.Cmd, chan struct{}) {
	c.mu.Lock()
	proc, exited := c.proc, c.exited
	c.mu.Unlock()
	if proc == nil {
		return nil, nil
	}
	select {
	case <-exited:
		return nil, nil
	default:
		return proc, exited
	}
}

// powerOff stops the machine: SIGTERM to its process group, SIGKILL after
// StopTimeout.
func (c *chassis) powerOff() error {
	proc, exited := c.machine()
	if proc == nil {
		return nil
	}
	pgid := -proc.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(c.cfg.StopTimeout):
	}
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("machine (pid %d) did not stop after SIGKILL", proc.Process.Pid)
	}
}

// softOff asks the machine to shut down and returns at once: ACPI through
// QMP when the machine has a QMP socket, else SIGTERM.
func (c *chassis) softOff() error {
	proc, _ := c.machine()
	if proc == nil {
		return nil
	}
	if c.cfg.QMPSocket != "" {
		return qmpCommand(c.cfg.QMPSocket, "system_powerdown")
	}
	return proc.Process.Signal(syscall.SIGTERM)
}

// qmpCommand runs one QMP command without arguments on a QEMU socket.
func qmpCommand(path, command string) error {
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(io.LimitReader(conn, 1<<20))
	if _, err := r.ReadBytes('\n'); err != nil { // the greeting
		return fmt.Errorf("qmp %s: greeting: %w", command, err)
	}
	for _, cmd := range []string{"qmp_capabilities", command} {
		if _, err := fmt.Fprintf(conn, "{\"execute\":%q}\n", cmd); err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return fmt.Errorf("qmp %s: %w", cmd, err)
			}
			var msg struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Desc string `json:"desc"`
				} `json:"error"`
			}
			if json.Unmarshal(line, &msg) != nil {
				continue
			}
			if msg.Error != nil {
				return fmt.Errorf("qmp %s: %s", cmd, msg.Error.Desc)
			}
			if msg.Return != nil {
				break
			}
			// An event: keep reading.
		}
	}
	return nil
}
