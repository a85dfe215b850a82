package bench

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Machine describes where a run happened.
type Machine struct {
	CPU        string `json:"cpu"`        // model name from /proc/cpuinfo
	NProc      int    `json:"nproc"`      // CPUs this process may use
	GOMAXPROCS int    `json:"gomaxprocs"` // Go's parallelism
	MemTotal   int64  `json:"mem_total"`  // bytes, from /proc/meminfo
	GoVersion  string `json:"go_version"` // runtime.Version()
	OS         string `json:"os"`         // GOOS/GOARCH and kernel release
	Hostname   string `json:"hostname"`   // os.Hostname()
}

// machineInfo reads what it can; missing /proc files leave fields empty.
func machineInfo() Machine {
	m := Machine{
		NProc:      runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
	}
	m.CPU = procField("/proc/cpuinfo", "model name", ':')
	if m.CPU == "" {
		m.CPU = "unknown"
	}
	if kb := procField("/proc/meminfo", "MemTotal", ':'); kb != "" {
		m.MemTotal = parseKB(kb)
	}
	if rel, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += " (Linux " + strings.TrimSpace(string(rel)) + ")"
	}
	m.Hostname, _ = os.Hostname()
	return m
}

// procField returns the value of the first "key<sep> value" line of a
// /proc file, trimmed, or "".
func procField(path, key string, sep byte) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), string(sep))
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// parseKB parses "123 kB" into bytes (0 if malformed).
func parseKB(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(s, "kB")), 10, 64)
	if err != nil {
		return 0
	}
	return n << 10
}

// Usage is what a phase of the run cost.
type Usage struct {
	// Scope says whose resources these are.
	Scope string `json:"scope"`
	// Wall is the phase's duration.
	Wall time.Duration `json:"wall_ns"`
	// CPUSeconds is this process's user and system CPU time in the phase
	// (getrusage).
	CPUSeconds float64 `json:"cpu_seconds"`
	// Cores is CPUSeconds per second of Wall.
	Cores float64 `json:"cores"`
	// PeakRSS is this process's peak resident set (VmHWM) in the phase, in
	// bytes; the peak is reset at the phase's start where the kernel
	// allows it (PeakRSSReset).
	PeakRSS      int64 `json:"peak_rss"`
	PeakRSSReset bool  `json:"peak_rss_reset"`
	// MachineBusy is the fraction of all CPUs' time the whole machine was
	// busy in the phase (/proc/stat), this process and everything else.
	MachineBusy float64 `json:"machine_busy"`
}

// meter measures one phase.
type meter struct {
	start     time.Time
	cpu       time.Duration
	reset     bool
	busy, all uint64
}

func startMeter() *meter {
	// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
	reset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	busy, all := machineTicks()
	return &meter{start: time.Now(), cpu: cpuTime(), reset: reset, busy: busy, all: all}
}

func (m *meter) stop(scope string) Usage {
	u := Usage{Scope: scope, Wall: time.Since(m.start), PeakRSSReset: m.reset}
	u.CPUSeconds = (cpuTime() - m.cpu).Seconds()
	if u.Wall > 0 {
		u.Cores = u.CPUSeconds / u.Wall.Seconds()
	}
	if hwm := procField("/proc/self/status", "VmHWM", ':'); hwm != "" {
		u.PeakRSS = parseKB(hwm)
	}
	if busy, all := machineTicks(); all > m.all {
		u.MachineBusy = float64(busy-m.busy) / float64(all-m.all)
	}
	return u
}

// cpuTime is this process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineTicks returns the busy and total CPU ticks of the whole machine
// from the first line of /proc/stat (0, 0 if unreadable).
func machineTicks() (busy, all uint64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0
	}
	for i, f := range fields[1:] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0
		}
		// user nice system idle iowait irq softirq steal guest guest_nice:
		// guest time is already counted in user and nice.
		if i >= 8 {
			break
		}
		all += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, all
}
