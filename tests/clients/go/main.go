// Runs queries through lib/pq, the driver family of Grafana's PostgreSQL data source.
//
// Input (stdin): one query per line, optionally followed by a TAB and one string parameter.
// Output: per query a block: "COLUMNS" name:type..., one line per row (TAB-separated text,
// \N for NULL), then "END <rows>" or "ERROR <sqlstate> <message>".
package main

import (
	"bufio"
	"database/sql"
	"fmt"
	"os"
	"strings"

	"github.com/lib/pq"
)

func main() {
	db, err := sql.Open("postgres", os.Getenv("PGDSN"))
	if err != nil {
		fmt.Println("ERROR open", err)
		os.Exit(1)
	}
	defer db.Close()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		parts := strings.SplitN(in.Text(), "\t", 2)
		var args []interface{}
		if len(parts) == 2 {
			args = append(args, parts[1])
		}
		run(db, out, parts[0], args)
	}
}

func run(db *sql.DB, out *bufio.Writer, query string, args []interface{}) {
	rows, err := db.Query(query, args...)
	if err != nil {
		report(out, err)
		return
	}
	defer rows.Close()
	types, _ := rows.ColumnTypes()
	header := []string{"COLUMNS"}
	for _, t := range types {
		header = append(header, t.Name()+":"+t.DatabaseTypeName())
	}
	fmt.Fprintln(out, strings.Join(header, "\t"))
	values := make([]sql.NullString, len(types))
	ptrs := make([]interface{}, len(types))
	for i := range values {
		ptrs[i] = &values[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			report(out, err)
			return
		}
		cells := make([]string, len(values))
		for i, v := range values {
			if v.Valid {
				cells[i] = v.String
			} else {
				cells[i] = `\N`
			}
		}
		fmt.Fprintln(out, strings.Join(cells, "\t"))
		n++
	}
	if err := rows.Err(); err != nil {
		report(out, err)
		return
	}
	fmt.Fprintf(out, "END %d\n", n)
}

func report(out *bufio.Writer, err error) {
	if pqErr, ok := err.(*pq.Error); ok {
		fmt.Fprintf(out, "ERROR %s %s\n", pqErr.Code, pqErr.Message)
		return
	}
	fmt.Fprintf(out, "ERROR ? %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
}
