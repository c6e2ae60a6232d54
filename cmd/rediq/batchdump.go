package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/rediq/rediq"
)

func batchDumpCmd(ctx context.Context, args []string, stdout io.Writer) error {
	var (
		name, file      string
		limit           int
		pop             bool
		force, appendTo bool
	)
	return batchCmd(ctx, args, stdout, "dump",
		"Prints rows of one of the batch's tables as JSON lines, newest first;\n"+
			"with --file it writes them to that file (JSON lines) and says how many.\n"+
			"A task's result goes to table \"default\", or to the one its rediq.ResultTable\n"+
			"names (a slice result, a row per element); rediq.Collect adds rows to any table.\n"+
			"It reads while the batch runs too. --pop removes the rows it reads, so that the\n"+
			"next dump goes on with older ones. An existing --file is refused unless --append\n"+
			"(add the rows at its end: what a loop of --pop dumps wants) or --force (replace it).",
		`without --file, one array of the rows, newest first; with --file, {batch, table, file, rows}`,
		func(fs *flagSet) {
			fs.StringVarP(&name, "table", "t", "default", "the table")
			fs.IntVarP(&limit, "limit", "n", 10, "rows to read, newest first")
			fs.StringVarP(&file, "file", "f", "", "write the rows to this file, as JSON lines, in place of stdout")
			fs.BoolVar(&pop, "pop", false, "remove the rows read from the table")
			fs.BoolVar(&appendTo, "append", false, "with --file: add the rows at the end of the file if it exists")
			fs.BoolVar(&force, "force", false, "with --file: replace the file if it exists")
		},
		func(ctx context.Context, app *rediq.App, id int64, out outputFormat) error {
			if limit <= 0 {
				return usageErrorf("--limit must be positive")
			}
			if (appendTo || force) && file == "" {
				return usageErrorf("--append and --force are for --file")
			}
			if appendTo && force {
				return usageErrorf("--append and --force: give one")
			}
			st, err := app.BatchStat(ctx, id)
			if err != nil {
				return err
			}
			if err := checkTable(ctx, app, id, name, batchState(st) == "running"); err != nil {
				return err
			}
			// The file is made before any row is read: with --pop, rows read
			// and then not written would be lost.
			var f *os.File
			if file != "" {
				if f, err = openDumpFile(file, appendTo, force); err != nil {
					return err
				}
				defer f.Close()
			}
			raws, err := rediq.ReadTable[msgpack.RawMessage](ctx, app, id, name, rediq.TableOptions{Pop: pop, Limit: limit})
			if err != nil {
				return err
			}
			rows := make([]json.RawMessage, len(raws))
			for i, r := range raws {
				rows[i] = jsonValue(r)
			}
			if f == nil {
				if out == outputJSON {
					return printJSON(stdout, rows)
				}
				return writeJSONLines(stdout, rows)
			}
			if err := writeJSONLines(f, rows); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("write %s: %w", file, err)
			}
			if out == outputJSON {
				return printJSON(stdout, struct {
					Batch int64  `json:"batch"`
					Table string `json:"table"`
					File  string `json:"file"`
					Rows  int    `json:"rows"`
				}{id, name, file, len(rows)})
			}
			verb := "wrote"
			switch {
			case pop && appendTo:
				verb = "popped and appended"
			case pop:
				verb = "popped and wrote"
			case appendTo:
				verb = "appended"
			}
			_, err = fmt.Fprintf(stdout, "%s %d %s of table %q of batch %d to %s\n", verb, len(rows), plural(len(rows), "row", "rows"), name, id, file)
			return err
		})
}

// openDumpFile opens the file dump writes to: a new one (an existing file is
// an error, which names the flags that allow it), or with appendTo its end,
// or with force a replaced one. O_EXCL makes "new" hold even against another
// dump starting at the same moment.
func openDumpFile(name string, appendTo, force bool) (*os.File, error) {
	flags := os.O_WRONLY | os.O_CREATE
	switch {
	case appendTo:
		flags |= os.O_APPEND
	case force:
		flags |= os.O_TRUNC
	default:
		flags |= os.O_EXCL
	}
	f, err := os.OpenFile(name, flags, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil, &usageError{fmt.Errorf("%s exists: --append adds the rows at its end, --force replaces it", name)}
	}
	return f, err
}

// writeJSONLines writes each row on a line of its own.
func writeJSONLines(w io.Writer, rows []json.RawMessage) error {
	bw := bufio.NewWriter(w)
	for _, r := range rows {
		bw.Write(r)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// checkTable fails unless batch id has had a table called name, listing
// those it has: a misspelt name would otherwise just print nothing.
func checkTable(ctx context.Context, app *rediq.App, id int64, name string, running bool) error {
	names, err := app.BatchTables(ctx, id)
	if err != nil {
		return err
	}
	if slices.Contains(names, name) {
		return nil
	}
	slices.Sort(names)
	yet, list := "", strings.Join(names, ", ")
	if running {
		yet = " yet"
	}
	if len(names) == 0 {
		list = "none"
	}
	return fmt.Errorf("batch %d has no table %q%s (its tables: %s)", id, name, yet, list)
}
