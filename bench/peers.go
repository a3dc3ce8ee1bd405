package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A Peer syncs or backs up a folder; the comparison runs each peer over
// the same corpus in the same run. Bytes are what crossed to the other
// side (or, for a backup, what the repository grew by).
type Peer interface {
	Name() string
	Version(ctx context.Context) string
	// Fresh forgets everything the peer has of earlier runs.
	Fresh(ctx context.Context) error
	// Send copies src to the other side; the first time is the initial
	// copy, later times are incremental.
	Send(ctx context.Context, src string) (Measure, int64, error)
	// Receive writes the latest copy into the empty directory dst.
	Receive(ctx context.Context, dst string) (Measure, error)
	Close() error
}

// Net runs commands on a client host and names the server's address:
// loopback, or an emulated WAN between network namespaces.
type Net struct {
	// Client prefixes client commands (nil: run directly).
	Client []string
	// Server prefixes server processes.
	Server []string
	// Host is the server's address as clients dial it.
	Host string
}

func (n Net) cmd(prefix []string, name string, args ...string) (string, []string) {
	if len(prefix) == 0 {
		return name, args
	}
	return prefix[0], append(append(append([]string(nil), prefix[1:]...), name), args...)
}

// exec runs a client command.
func (n Net) exec(ctx context.Context, env []string, name string, args ...string) (Measure, error) {
	c, a := n.cmd(n.Client, name, args...)
	return Exec(ctx, env, c, a...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ferryPeer pushes to and pulls from a `ferry serve`.
type ferryPeer struct {
	ferry, work string
	net         Net
	srv         *Server
	n           int
	folder      string // the folder of the current run (src with .ferry)
	token       string
	ns          string
	// flags go before every push and pull (e.g. --streams 4).
	flags []string
}

// NewFerryPeer starts a server in work.
func NewFerryPeer(ctx context.Context, ferry, work string, n Net) (Peer, error) {
	p := &ferryPeer{ferry: ferry, work: work, net: n}
	srv, err := startServerOn(ctx, ferry, filepath.Join(work, "ferry-data"), n)
	if err != nil {
		return nil, err
	}
	p.srv = srv
	return p, nil
}

// startServerOn starts `ferry serve` on the net's server side.
func startServerOn(ctx context.Context, ferry, data string, n Net) (*Server, error) {
	if len(n.Server) == 0 {
		return StartServer(ctx, ferry, data)
	}
	name, args := n.cmd(n.Server, ferry, "--json", "-q", "serve", "--data", data, "--listen", n.Host+":7443")
	return startServer(exec.CommandContext(ctx, name, args...), data)
}

func (p *ferryPeer) Name() string { return "ferry" }

func (p *ferryPeer) Version(ctx context.Context) string { return version(ctx, p.ferry) }

func (p *ferryPeer) Fresh(ctx context.Context) error {
	p.n++
	p.ns = fmt.Sprintf("run%d", p.n)
	p.folder = ""
	m, err := p.net.exec(ctx, nil, p.ferry, "token", "create", "--data", p.srv.Data, "--namespace", p.ns, "--perm", "write")
	if err != nil {
		return err
	}
	p.token = strings.TrimSpace(strings.SplitN(m.Stdout, "\n", 2)[0])
	return nil
}

func (p *ferryPeer) env() []string {
	return []string{"FERRY_TOKEN=" + p.token, "FERRY_FINGERPRINT=" + p.srv.Fingerprint}
}

func (p *ferryPeer) Send(ctx context.Context, src string) (Measure, int64, error) {
	if p.folder != src {
		os.RemoveAll(filepath.Join(src, ".ferry"))
		if _, err := p.net.exec(ctx, p.env(), p.ferry, "init", src, "--remote", p.srv.URL(p.ns), "--root", "bench"); err != nil {
			return Measure{}, 0, err
		}
		p.folder = src
	}
	cpu0 := procCPU(p.srv.Pid())
	// --force: the corpora's edits delete 10% of a tree, which the
	// deletion guard would stop for a user to confirm.
	m, err := p.net.exec(ctx, nil, p.ferry, append(append([]string{"--json"}, p.flags...), "push", "--force", src)...)
	m.ServerCPU = procCPU(p.srv.Pid()) - cpu0
	if err != nil {
		return m, 0, err
	}
	var s struct {
		BytesSent int64 `json:"bytes_sent"`
	}
	err = json.Unmarshal([]byte(m.Stdout), &s)
	return m, s.BytesSent, err
}

func (p *ferryPeer) Receive(ctx context.Context, dst string) (Measure, error) {
	if _, err := p.net.exec(ctx, p.env(), p.ferry, "init", dst, "--remote", p.srv.URL(p.ns), "--root", "bench"); err != nil {
		return Measure{}, err
	}
	cpu0 := procCPU(p.srv.Pid())
	m, err := p.net.exec(ctx, nil, p.ferry, append(append([]string(nil), p.flags...), "pull", dst)...)
	m.ServerCPU = procCPU(p.srv.Pid()) - cpu0
	return m, err
}

func (p *ferryPeer) Close() error { return p.srv.Stop() }

// rsyncPeer copies to an rsync daemon (no encryption, no compression:
// rsync's fastest setting on a LAN), with --delete so the copy mirrors.
type rsyncPeer struct {
	work, dest string
	net        Net
	port       int
	daemon     *exec.Cmd
}

// NewRsyncPeer starts `rsync --daemon` on the net's server side.
func NewRsyncPeer(ctx context.Context, work string, n Net) (Peer, error) {
	if _, err := exec.LookPath("rsync"); err != nil {
		return nil, errors.New("rsync is not installed")
	}
	p := &rsyncPeer{work: work, dest: filepath.Join(work, "rsync-dest"), net: n, port: 8730}
	if n.Host == "" || n.Host == "127.0.0.1" {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p.port = port
	}
	conf := filepath.Join(work, "rsyncd.conf")
	os.MkdirAll(p.dest, 0o755)
	body := fmt.Sprintf("use chroot = no\nuid = root\ngid = root\npid file = %s\n[m]\npath = %s\nread only = no\n", filepath.Join(work, "rsyncd.pid"), p.dest)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, err
	}
	host := n.Host
	if host == "" {
		host = "127.0.0.1"
	}
	name, args := n.cmd(n.Server, "rsync", "--daemon", "--no-detach", "--config="+conf, "--address="+host, "--port="+strconv.Itoa(p.port))
	p.daemon = exec.CommandContext(ctx, name, args...)
	if err := p.daemon.Start(); err != nil {
		return nil, err
	}
	// The daemon is ready when its port answers.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := p.net.exec(ctx, nil, "rsync", "rsync://"+host+":"+strconv.Itoa(p.port)+"/")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			p.Close()
			return nil, fmt.Errorf("rsync daemon did not start: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p, nil
}

func (p *rsyncPeer) Name() string { return "rsync" }

func (p *rsyncPeer) Version(ctx context.Context) string { return version(ctx, "rsync", "--version") }

func (p *rsyncPeer) url() string {
	host := p.net.Host
	if host == "" {
		host = "127.0.0.1"
	}
	return "rsync://" + host + ":" + strconv.Itoa(p.port) + "/m/"
}

func (p *rsyncPeer) Fresh(ctx context.Context) error {
	os.RemoveAll(p.dest)
	return os.MkdirAll(p.dest, 0o755)
}

var rsyncSent = regexp.MustCompile(`Total bytes sent: ([\d,]+)`)

func (p *rsyncPeer) Send(ctx context.Context, src string) (Measure, int64, error) {
	cpu0 := p.daemonCPU()
	m, err := p.net.exec(ctx, nil, "rsync", "-a", "--delete", "--stats", "--exclude=/.ferry", src+"/", p.url())
	m.ServerCPU = p.daemonCPU() - cpu0
	if err != nil {
		return m, 0, err
	}
	var sent int64
	if g := rsyncSent.FindStringSubmatch(m.Stdout); g != nil {
		sent, _ = strconv.ParseInt(strings.ReplaceAll(g[1], ",", ""), 10, 64)
	}
	return m, sent, nil
}

func (p *rsyncPeer) Receive(ctx context.Context, dst string) (Measure, error) {
	cpu0 := p.daemonCPU()
	m, err := p.net.exec(ctx, nil, "rsync", "-a", p.url(), dst+"/")
	m.ServerCPU = p.daemonCPU() - cpu0
	return m, err
}

// daemonCPU is the daemon's CPU with that of the children it reaped. A
// connection's child may outlive the client by a moment: it is waited
// for, up to a second.
func (p *rsyncPeer) daemonCPU() time.Duration {
	pid := p.daemon.Process.Pid
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			break
		}
	}
	return procTreeCPU(pid)
}

func (p *rsyncPeer) Close() error {
	if p.daemon != nil && p.daemon.Process != nil {
		p.daemon.Process.Signal(syscall.SIGTERM)
		p.daemon.Wait()
	}
	return nil
}

// resticPeer backs up into a local repository (restic's own fastest case:
// no network at all).
type resticPeer struct {
	work, repo string
	net        Net
}

// NewResticPeer prepares a repository path in work.
func NewResticPeer(ctx context.Context, work string, n Net) (Peer, error) {
	if _, err := exec.LookPath("restic"); err != nil {
		return nil, errors.New("restic is not installed")
	}
	return &resticPeer{work: work, repo: filepath.Join(work, "restic-repo"), net: n}, nil
}

func (p *resticPeer) Name() string { return "restic" }

func (p *resticPeer) Version(ctx context.Context) string { return version(ctx, "restic", "version") }

func (p *resticPeer) env() []string {
	return []string{"RESTIC_PASSWORD=bench", "RESTIC_REPOSITORY=" + p.repo, "RESTIC_CACHE_DIR=" + filepath.Join(p.work, "restic-cache")}
}

func (p *resticPeer) Fresh(ctx context.Context) error {
	os.RemoveAll(p.repo)
	_, err := p.net.exec(ctx, p.env(), "restic", "init")
	return err
}

func (p *resticPeer) Send(ctx context.Context, src string) (Measure, int64, error) {
	m, err := p.net.exec(ctx, p.env(), "restic", "backup", "--json", "--exclude", filepath.Join(src, ".ferry"), src)
	if err != nil {
		return m, 0, err
	}
	var added int64
	for _, line := range strings.Split(m.Stdout, "\n") {
		var s struct {
			Type  string `json:"message_type"`
			Added int64  `json:"data_added"`
		}
		if json.Unmarshal([]byte(line), &s) == nil && s.Type == "summary" {
			added = s.Added
		}
	}
	return m, added, nil
}

func (p *resticPeer) Receive(ctx context.Context, dst string) (Measure, error) {
	return p.net.exec(ctx, p.env(), "restic", "restore", "latest", "--target", dst)
}

func (p *resticPeer) Close() error { return nil }

// EnsurePeers installs rsync and restic with apt-get when they are
// missing; it says what it could not install.
func EnsurePeers(ctx context.Context, log func(string)) {
	var missing []string
	for _, tool := range []string{"rsync", "restic"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	log("installing " + strings.Join(missing, " ") + " with apt-get")
	cmd := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "-q"}, missing...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		log(fmt.Sprintf("could not install %s (%v); those peers are skipped: %s", strings.Join(missing, " "), err, lastLine(string(out))))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
