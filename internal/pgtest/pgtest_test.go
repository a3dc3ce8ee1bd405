package pgtest

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestServer: the cluster answers, keeps a committed row across a kill -9
// and restart, and the compare-and-swap a head row will use moves it once
// of two tries that expected the same old value.
func TestServer(t *testing.T) {
	ctx := context.Background()
	s := Start(t)
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `CREATE TABLE heads (ns text, root text, head bytea NOT NULL, PRIMARY KEY (ns, root))`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, `INSERT INTO heads VALUES ('a', 'r', '\x01')`); err != nil {
		t.Fatal(err)
	}
	swap := func(old, new []byte) bool {
		tag, err := c.Exec(ctx, `UPDATE heads SET head = $2 WHERE ns = 'a' AND root = 'r' AND head = $1`, old, new)
		if err != nil {
			t.Fatal(err)
		}
		return tag.RowsAffected() == 1
	}
	if !swap([]byte{1}, []byte{2}) || swap([]byte{1}, []byte{3}) {
		t.Fatal("compare-and-swap of the head row moved it twice from one old value")
	}
	c.Close(ctx)

	s.Kill()
	if _, err := pgx.Connect(ctx, s.DSN("postgres")); err == nil {
		t.Fatal("connected to a killed server")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	c, err = pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var head []byte
	if err := c.QueryRow(ctx, `SELECT head FROM heads WHERE ns = 'a' AND root = 'r'`).Scan(&head); err != nil || len(head) != 1 || head[0] != 2 {
		t.Fatalf("after kill -9 and restart: head %x, %v", head, err)
	}
	if err := c.QueryRow(ctx, `SELECT head FROM heads WHERE ns = 'nosuch'`).Scan(&head); !errors.Is(err, pgx.ErrNoRows) {
		t.Fatalf("a missing row: %v", err)
	}
}
