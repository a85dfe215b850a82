package cli

import (
	"fmt"
	"os"
	"time"
)

// minWatch is the shortest --watch interval: a list costs the server a
// query per page, and a screen redrawn faster is not read.
const minWatch = time.Second

// watchFlag registers --watch on a list command; repeat honours it.
func (c *call) watchFlag() {
	c.flags.DurationVar(&c.watch, "watch", 0, "list again every this long (e.g. 5s) until interrupted")
}

// repeat runs list once, or with --watch again every interval until the
// call's context ends (Ctrl-C), which is a normal exit. A table is drawn
// under a line saying when, on a cleared screen when the output is a
// terminal; JSON and YAML print one document per round. An error in the
// first round ends the call; a later one is printed and the watch goes
// on, as a server restarting should not end it.
func (c *call) repeat(list func() error) error {
	if c.watch == 0 {
		return list()
	}
	if c.watch < minWatch {
		return usageError(fmt.Sprintf("--watch %s: at least %s", c.watch, minWatch))
	}
	for round := 0; ; round++ {
		if c.output == "table" {
			if isTerminal(c.io.Out) {
				fmt.Fprint(c.io.Out, "\x1b[H\x1b[2J")
			}
			fmt.Fprintf(c.io.Out, "%s, every %s, at %s\n\n", c.name, c.watch, time.Now().Format(time.TimeOnly))
		}
		err := list()
		switch {
		case c.ctx.Err() != nil:
			return nil
		case err != nil && round == 0:
			return err
		case err != nil:
			exitCode(c.io.Err, c.name, err) // prints it in one line
		}
		select {
		case <-c.ctx.Done():
			return nil
		case <-time.After(c.watch):
		}
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
