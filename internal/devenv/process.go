package devenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// dirPrefix names every folder devenv creates under os.TempDir(), so that
// folders of a process that died can be found and swept.
const dirPrefix = "keybroker-devenv-"

// ownerFile holds the pid of the process that created a folder.
const ownerFile = "owner.pid"

// NewRunDir creates a fresh folder for one server and records our pid in it.
// Folders of earlier processes that are no longer alive are removed first.
func NewRunDir(kind string) (string, error) {
	sweepStaleDirs()
	dir, err := os.MkdirTemp("", dirPrefix+kind+"-")
	if err != nil {
		return "", fmt.Errorf("create %s folder: %w", kind, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("write %s owner file: %w", kind, err)
	}
	return dir, nil
}

// sweepStaleDirs removes folders whose creating process has exited without
// cleaning up (a test binary that panicked, a killed `keybroker dev`). Their
// servers died with their parent (see childAttrs).
func sweepStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		os.RemoveAll(d)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// childAttrs puts a server in its own process group (so a terminal's Ctrl-C
// reaches only keybroker, which then stops the server in order) and asks the
// kernel to signal it when its parent dies, so it never outlives a test
// binary that panicked. Go sets the parent-death signal after switching
// credentials, so it holds for servers run as another user too.
func childAttrs(deathSignal syscall.Signal, cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSignal, Credential: cred}
}

// FreePort returns a loopback TCP port that was free a moment ago. With
// pair set, port+1 was free too (Vault's cluster listener takes it).
func FreePort(pair bool) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !pair {
			l.Close()
			return port, nil
		}
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
		l.Close()
		if err == nil {
			l2.Close()
			return port, nil
		}
	}
	return 0, errors.New("find a free port: none found after 50 tries")
}

// process is a started server: its command, where it logs, and a channel
// closed when it has exited.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
	stop    sync.Once
}

func startProcess(name string, cmd *exec.Cmd, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// terminate sends sig, waits up to grace for the exit, then kills.
func (p *process) terminate(sig syscall.Signal, grace time.Duration) {
	p.stop.Do(func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// logTail returns the last lines of the process's log, for error messages
// when a server fails to start. Lines that carry credentials (the Vault dev
// server prints its root token and unseal key) are left out.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	var lines [][]byte
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if bytes.Contains(l, []byte("Root Token")) || bytes.Contains(l, []byte("Unseal Key")) {
			continue
		}
		lines = append(lines, l)
	}
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// runAs runs a short command to completion and includes its output in the
// error when it fails.
func runAs(cmd *exec.Cmd, cred *syscall.Credential) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Path), err, bytes.TrimSpace(out))
	}
	return nil
}
