package pgmeta

import (
	"context"
	"fmt"

	"github.com/ferry-sync/ferry/cas"
)

// Iter iterates [lower, upper) a page of rows at a time. It is not a
// snapshot: each page is read when the one before runs out.
func (m *Meta) Iter(ctx context.Context, lower, upper []byte) (cas.MetaIter, error) {
	return &iter{m: m, ctx: ctx, lower: lower, upper: upper}, nil
}

// firstPage is small because many iterations stop at once (a seek, the
// last entry); pages grow while the caller keeps reading.
const (
	firstPage = 32
	maxPage   = 2048
)

type iter struct {
	m            *Meta
	ctx          context.Context
	lower, upper []byte
	rows         []row
	i            int
	more         bool // rows after the page's last may exist
	page         int
	err          error
}

type row struct{ k, v []byte }

// load reads the page of rows from from on (after from, unless incl).
func (it *iter) load(from []byte, incl bool) bool {
	it.rows, it.i = it.rows[:0], 0
	if it.page == 0 {
		it.page = firstPage
	} else {
		it.page = min(2*it.page, maxPage)
	}
	op := ">"
	if incl {
		op = ">="
	}
	q := `SELECT k, v FROM ferry_kv WHERE k ` + op + ` $1`
	args := []any{from}
	if it.upper != nil {
		q += ` AND k < $2`
		args = append(args, it.upper)
	}
	q += fmt.Sprintf(` ORDER BY k LIMIT %d`, it.page)
	it.err = it.m.do(it.ctx, func(ctx context.Context) error {
		it.rows = it.rows[:0]
		rows, err := it.m.pool.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.k, &r.v); err != nil {
				return err
			}
			it.rows = append(it.rows, r)
		}
		return rows.Err()
	})
	if it.err != nil {
		it.err = fmt.Errorf("pgmeta: iterate: %w", it.err)
		it.rows = it.rows[:0]
	}
	it.more = len(it.rows) == it.page
	return it.Valid()
}

func (it *iter) First() bool {
	it.page = 0
	return it.load(it.lower, true)
}

func (it *iter) SeekGE(key []byte) bool {
	if string(key) < string(it.lower) {
		key = it.lower
	}
	it.page = 0
	return it.load(key, true)
}

func (it *iter) Next() bool {
	if !it.Valid() {
		return false
	}
	it.i++
	if it.i < len(it.rows) {
		return true
	}
	if !it.more {
		return false
	}
	return it.load(it.rows[len(it.rows)-1].k, false)
}

// Last positions at the last key; Next then ends the iteration.
func (it *iter) Last() bool {
	it.rows, it.i, it.more = it.rows[:0], 0, false
	q := `SELECT k, v FROM ferry_kv WHERE k >= $1`
	args := []any{it.lower}
	if it.upper != nil {
		q += ` AND k < $2`
		args = append(args, it.upper)
	}
	q += ` ORDER BY k DESC LIMIT 1`
	var r row
	it.err = it.m.do(it.ctx, func(ctx context.Context) error {
		err := it.m.pool.QueryRow(ctx, q, args...).Scan(&r.k, &r.v)
		if isNoRows(err) {
			return nil
		}
		if err == nil {
			it.rows = append(it.rows, r)
		}
		return err
	})
	if it.err != nil {
		it.err = fmt.Errorf("pgmeta: iterate: %w", it.err)
	}
	return it.Valid()
}

func (it *iter) Valid() bool   { return it.err == nil && it.i < len(it.rows) }
func (it *iter) Key() []byte   { return it.rows[it.i].k }
func (it *iter) Value() []byte { return it.rows[it.i].v }
func (it *iter) Error() error  { return it.err }
func (it *iter) Close() error  { return it.err }
