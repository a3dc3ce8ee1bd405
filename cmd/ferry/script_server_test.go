package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rogpeppe/go-internal/testscript"
)

// Script commands that run a real `ferry serve` on 127.0.0.1 for a CLI
// scenario:
//
//	serve            start a server on $WORK/server; set $SERVER
//	                 (quic://HOST:PORT), $FP and $DATA
//	stopserve        kill it (for offline scenarios)
//	mktoken NS PERM FILE
//	                 write a new token of the server's to FILE
//	readenv VAR FILE set $VAR to FILE's first line (after cp stdout FILE)
var scriptServers sync.Map // $WORK -> *serverProc

var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"serve": func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 0 {
			ts.Fatalf("usage: serve")
		}
		data := ts.MkAbs("server")
		p, err := launchServe(data, "127.0.0.1:0", nil, nil)
		if err != nil {
			ts.Fatalf("%v", err)
		}
		scriptServers.Store(ts.Getenv("WORK"), p)
		ts.Defer(p.kill)
		ts.Setenv("SERVER", "quic://"+p.addr)
		ts.Setenv("FP", p.fp)
		ts.Setenv("DATA", data)
	},
	"stopserve": func(ts *testscript.TestScript, neg bool, args []string) {
		v, ok := scriptServers.Load(ts.Getenv("WORK"))
		if neg || !ok {
			ts.Fatalf("usage: stopserve, after serve")
		}
		v.(*serverProc).kill()
	},
	"readenv": func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 2 {
			ts.Fatalf("usage: readenv VAR FILE")
		}
		line, _, _ := strings.Cut(ts.ReadFile(args[1]), "\n")
		ts.Setenv(args[0], strings.TrimSpace(line))
	},
	"mktoken": func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 3 {
			ts.Fatalf("usage: mktoken NS PERM FILE")
		}
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"token", "create", "--data", ts.Getenv("DATA"), "--namespace", args[0], "--perm", args[1]}, &out, &errb); code != 0 {
			ts.Fatalf("token create: %s", errb.String())
		}
		token := strings.TrimSpace(strings.SplitN(out.String(), "\n", 2)[0])
		if err := os.WriteFile(filepath.Join(ts.Getenv("WORK"), args[2]), []byte(token+"\n"), 0o600); err != nil {
			ts.Fatalf("%v", err)
		}
	},
}
