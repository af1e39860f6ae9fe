// Command testsum reads `go test -json` on stdin, prints the tests' output
// as `go test -v` would, and counts what passed, failed and was skipped
// (tests and subtests) into a file. With -report it prints the counts of
// that file as one line and fails when anything failed, or, under CI
// (CI=true), when anything was skipped: a skip there hides a failure.
//
//	go test -json ./... | go run ./integration/cmd/testsum -record FILE
//	go run ./integration/cmd/testsum -report FILE
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// event is one line of `go test -json` (test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// counts is what a file of counts holds.
type counts struct {
	Passed, Failed, Skipped   int
	FailedNames, SkippedNames []string
	// Why holds, per failed test, the first lines of its failure messages
	// (the log dumps that follow them left out), for a report that shows
	// why a run failed even when only its end is read.
	Why map[string][]string `json:",omitempty"`
}

// reason is the line of a test's output that starts a failure message,
// as `go test` prints it ("    file_test.go:12: message"); the logs a
// test dumps after it (indented further) are not.
var reason = regexp.MustCompile(`^ {4}[\w.-]+_test\.go:\d+: `)

// maxWhy bounds how many message lines per test a report keeps.
const maxWhy = 6

func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func load(path string) counts {
	var c counts
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &c)
	}
	return c
}

func record(path string, in io.Reader, out io.Writer) error {
	c := load(path)
	failedPkg := false
	said := map[string][]string{} // per test, its message lines so far
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Fprintln(out, sc.Text()) // not JSON: a build error, say
			continue
		}
		switch e.Action {
		case "output":
			fmt.Fprint(out, e.Output)
			if e.Test != "" && reason.MatchString(e.Output) && !strings.HasSuffix(strings.TrimSpace(e.Output), "log:") &&
				!strings.Contains(e.Output, " log of ") && len(said[e.Test]) < maxWhy {
				said[e.Test] = append(said[e.Test], clip(e.Output))
			}
		case "pass":
			if e.Test != "" {
				c.Passed++
			}
		case "fail":
			if e.Test != "" {
				c.Failed++
				c.FailedNames = append(c.FailedNames, e.Test)
				if len(said[e.Test]) > 0 {
					if c.Why == nil {
						c.Why = map[string][]string{}
					}
					c.Why[e.Test] = said[e.Test]
				}
			} else {
				failedPkg = true
			}
		case "skip":
			if e.Test != "" {
				c.Skipped++
				c.SkippedNames = append(c.SkippedNames, e.Test)
			}
		}
	}
	if failedPkg && c.Failed == 0 {
		c.Failed++ // a package that failed to build or run
		c.FailedNames = append(c.FailedNames, "(a package)")
	}
	b, _ := json.Marshal(c)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	if failedPkg {
		return fmt.Errorf("tests failed")
	}
	return sc.Err()
}

func report(path string, out io.Writer) int {
	c := load(path)
	fmt.Fprintf(out, "%d passed, %d failed, %d skipped\n", c.Passed, c.Failed, c.Skipped)
	code := 0
	if c.Failed > 0 {
		fmt.Fprintf(out, "failed: %s\n", strings.Join(c.FailedNames, " "))
		for _, name := range c.FailedNames {
			for _, line := range c.Why[name] {
				fmt.Fprintf(out, "  %s: %s\n", name, line)
			}
		}
		code = 1
	}
	if c.Skipped > 0 {
		fmt.Fprintf(out, "skipped: %s\n", strings.Join(c.SkippedNames, " "))
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(out, "under CI a skipped test fails the run: it hides whatever it did not test")
			code = 1
		}
	}
	return code
}

func main() {
	rec := flag.String("record", "", "add the counts of `go test -json` on stdin to this file")
	rep := flag.String("report", "", "print the counts of this file and fail on failures (and skips under CI)")
	flag.Parse()
	switch {
	case *rec != "":
		if err := record(*rec, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case *rep != "":
		os.Exit(report(*rep, os.Stdout))
	default:
		flag.Usage()
		os.Exit(2)
	}
}
