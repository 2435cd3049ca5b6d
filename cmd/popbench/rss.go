package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// readRSS returns the resident set size of process pid in KiB, from the
// VmRSS line of /proc/PID/status. pid <= 0 gives 0.
func readRSS(pid int) (int64, error) {
	if pid <= 0 {
		return 0, nil
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("reading RSS: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 1 {
			break
		}
		kib, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing VmRSS %q: %w", rest, err)
		}
		return kib, nil
	}
	return 0, fmt.Errorf("no VmRSS line in /proc/%d/status", pid)
}

// rssSampler records a process's RSS at the start and its peak while a
// run lasts.
type rssSampler struct {
	first, peak int64
	done        chan struct{}
	wg          sync.WaitGroup
}

// startRSS starts sampling pid every 20 ms; pid <= 0 samples nothing.
func startRSS(pid int) *rssSampler {
	s := &rssSampler{done: make(chan struct{})}
	if pid <= 0 {
		return s
	}
	s.first, _ = readRSS(pid)
	s.peak = s.first
	s.wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				if v, err := readRSS(pid); err == nil && v > s.peak {
					s.peak = v
				}
			}
		}
	})
	return s
}

// stop ends sampling and returns the first and the peak reading.
func (s *rssSampler) stop() (first, peak int64) {
	close(s.done)
	s.wg.Wait()
	return s.first, s.peak
}
