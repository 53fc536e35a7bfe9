package lab

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Follow prints the last lines of each file, then whatever is appended,
// each line prefixed with site/component, until ctx ends.
func Follow(ctx context.Context, w io.Writer, files []string, last int) error {
	type tailed struct {
		prefix string
		f      *os.File
		r      *bufio.Reader
	}
	var ts []*tailed
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			continue // not started yet
		}
		defer f.Close()
		prefix := filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(path)))) + "/" + strings.TrimSuffix(filepath.Base(path), ".log")
		st, _ := f.Stat()
		// Start roughly `last` lines from the end (assume ~200 bytes a line).
		if off := st.Size() - int64(last*200); off > 0 {
			f.Seek(off, io.SeekStart)
			bufio.NewReader(f).ReadString('\n')
			f.Seek(off, io.SeekStart)
		}
		ts = append(ts, &tailed{prefix: prefix, f: f, r: bufio.NewReader(f)})
	}
	if len(ts) == 0 {
		return fmt.Errorf("no log files yet: is the lab up?")
	}
	partial := map[*tailed]string{}
	for {
		for _, t := range ts {
			for {
				line, err := t.r.ReadString('\n')
				if err != nil {
					partial[t] += line
					break
				}
				fmt.Fprintf(w, "%-22s %s", t.prefix, partial[t]+line)
				partial[t] = ""
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}
