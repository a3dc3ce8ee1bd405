package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/ferry-sync/ferry/cas"
	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/internal/failpoint"
	"github.com/quic-go/quic-go"
)

// Request ops.
const (
	opHead         = "head"
	opSwapHead     = "swap-head"
	opHas          = "has"
	opHistory      = "history"
	opRoots        = "roots"
	opTags         = "tags"
	opSetTag       = "set-tag"
	opList         = "list"
	opDelete       = "delete"
	opAdminClients = "admin.clients"
	opAdminRoots   = "admin.roots"
	opAdminHistory = "admin.history"
	opTokenCreate  = "token.create"
	opTokenList    = "token.list"
	opTokenRevoke  = "token.revoke"
	opDropHistory  = "drop-history"
	opAdminGC      = "admin.gc"
	opAdminCheck   = "admin.check"
	opQuota        = "quota"
	opAdminQuota   = "admin.quota"
	opShareCreate  = "share.create"
	opShareList    = "share.list"
	opShareUpdate  = "share.update"
	opShareInfo    = "share.info"
	opAdminPolicy  = "admin.policy"
	opDamaged      = "damaged"
	opVerify       = "verify"
	opAdminRepair  = "admin.repair"
	opAdminNS      = "admin.namespace"
	opInviteCreate = "invite.create"
	opInviteRedeem = "invite.redeem"
	opAdminRootDel = "admin.root.delete"
)

// maxVerify bounds the blobs one verify request re-reads.
const maxVerify = 64

func (s *session) handle(ctx context.Context, req Request) (Response, error) {
	var resp Response
	perm := PermRead
	switch req.Op {
	case opSwapHead, opSetTag, opDelete, opDropHistory, opShareCreate, opShareUpdate, opInviteCreate:
		perm = PermWrite
	case opShareInfo:
		// The one request a share link's connection may make.
		if s.tok.Share == nil {
			return resp, fmt.Errorf("%w: not a share link", ErrPermission)
		}
		if s.tok.Share.Expired(s.srv.opts.Now()) {
			return resp, fmt.Errorf("%w: the share link expired", ErrAuth)
		}
		resp.Share = s.tok.Share
		return resp, nil
	case opInviteRedeem:
		// The one request an invite's connection may make.
		return s.inviteRedeem(req)
	case opAdminClients, opAdminRoots, opAdminHistory, opTokenCreate, opTokenList, opTokenRevoke, opAdminGC, opAdminQuota, opAdminPolicy, opAdminNS:
		perm = PermAdmin
	case opAdminCheck:
		perm = PermRead // a namespace's token checks that namespace
		if s.ns == nil {
			perm = PermAdmin
		}
	case opAdminRepair, opAdminRootDel:
		perm = PermAdmin
	}
	if err := s.need(perm); err != nil {
		return resp, err
	}
	switch req.Op {
	case opHead:
		ref, err := s.ns.Head(ctx, req.Root)
		if err != nil {
			return resp, err
		}
		resp.Ref = ref[:]
	case opSwapHead:
		old, err := optRef(req.Old)
		if err != nil {
			return resp, err
		}
		newRef, err := refFromWire(req.New)
		if err != nil {
			return resp, err
		}
		err = s.srv.commit(
			func() error { return s.srv.checkCommit(ctx, s.ns, req.Root, old, newRef) },
			func() error {
				failpoint.Hit("server-commit-checked")
				return s.ns.SwapHead(ctx, req.Root, old, newRef)
			})
		if err != nil {
			return resp, err
		}
		failpoint.Hit("server-head-moved")
		s.log.Info("head moved", "root", req.Root, "from", old.Short(), "to", newRef.Short())
		s.srv.publish(s.ns.Name(), Event{Root: req.Root, Ref: newRef[:], Time: s.srv.opts.Now().UnixNano()})
	case opHas:
		if len(req.Refs) > MaxRefs {
			return resp, fmt.Errorf("%w: %d refs in one has (max %d)", ErrProtocol, len(req.Refs), MaxRefs)
		}
		refs, err := refsFromWire(req.Refs)
		if err != nil {
			return resp, err
		}
		has, err := s.ns.Has(ctx, refs)
		if err != nil {
			return resp, err
		}
		resp.Has = bitmap(has)
	case opHistory:
		return historyPage(ctx, s.ns, req)
	case opRoots:
		roots, err := s.ns.Roots(ctx)
		if err != nil {
			return resp, err
		}
		resp.Roots = roots
	case opTags:
		tags, err := s.ns.Tags(ctx, req.Root)
		if err != nil {
			return resp, err
		}
		for name, r := range tags {
			resp.Tags = append(resp.Tags, WireTag{Name: name, Ref: append([]byte(nil), r[:]...)})
		}
		slices.SortFunc(resp.Tags, func(a, b WireTag) int { return cmpString(a.Name, b.Name) })
	case opSetTag:
		ref, err := optRef(req.New)
		if err != nil {
			return resp, err
		}
		if ref.IsZero() {
			return resp, s.ns.SetTag(ctx, req.Root, req.Tag, ref)
		}
		// A tag keeps what it names from collection, so it may only name
		// a blob the namespace has, and a version only when complete
		// (checked like a commit, against the head).
		check := func() error {
			b, err := s.ns.Get(ctx, ref)
			if err != nil {
				return fmt.Errorf("tag %s: %w", ref.Short(), err)
			}
			if typ, err := index.TypeOf(b); err == nil && typ == index.TypeVersion {
				head, err := s.ns.Head(ctx, req.Root)
				if err != nil && !errors.Is(err, cas.ErrNotFound) {
					return err
				}
				return s.srv.checkCommit(ctx, s.ns, req.Root, head, ref)
			}
			return nil
		}
		return resp, s.srv.commit(check, func() error { return s.ns.SetTag(ctx, req.Root, req.Tag, ref) })
	case opDropHistory:
		if len(req.Seqs) > MaxRefs {
			return resp, fmt.Errorf("%w: %d entries in one drop-history (max %d)", ErrProtocol, len(req.Seqs), MaxRefs)
		}
		if err := s.ns.DropHistory(ctx, req.Root, req.Seqs); err != nil {
			return resp, err
		}
		s.log.Info("history dropped", "root", req.Root, "entries", len(req.Seqs))
	case opDamaged:
		refs, err := s.ns.Damaged(ctx, MaxRefs)
		if err != nil {
			return resp, err
		}
		resp.Refs = refsToWire(refs)
	case opVerify:
		if len(req.Refs) > maxVerify {
			return resp, fmt.Errorf("%w: %d refs in one verify (max %d)", ErrProtocol, len(req.Refs), maxVerify)
		}
		refs, err := refsFromWire(req.Refs)
		if err != nil {
			return resp, err
		}
		bad, err := s.ns.Verify(ctx, refs)
		if err != nil {
			return resp, err
		}
		resp.Has = bitmap(bad)
		for i, b := range bad {
			if b {
				s.log.Warn("a client found a damaged blob; verified and recorded", "ref", refs[i].String())
			}
		}
	case opAdminGC, opAdminCheck, opAdminRepair:
		if req.Op == opAdminGC && s.tok.Namespace != AllNamespaces {
			return resp, fmt.Errorf("%w: gc covers the whole store: it needs a server admin token", ErrPermission)
		}
		m := s.srv.opts.Maintenance
		if m == nil {
			return resp, fmt.Errorf("%w: this server does not run maintenance", ErrUnavailable)
		}
		mr := MaintenanceRequest{DryRun: req.DryRun, Grace: -1, ReadData: req.ReadData, SubsetN: req.SubsetN, SubsetM: req.SubsetM}
		if s.tok.Namespace != AllNamespaces {
			mr.Namespace = s.nsName()
		}
		if req.GraceNS != nil && *req.GraceNS >= 0 {
			mr.Grace = time.Duration(*req.GraceNS)
		}
		var rep []byte
		var err error
		switch req.Op {
		case opAdminGC:
			s.log.Info("gc requested", "dry_run", mr.DryRun, "grace", mr.Grace)
			rep, err = m.GC(ctx, mr)
		case opAdminRepair:
			s.log.Info("repair requested", "namespace", mr.Namespace)
			rep, err = m.Repair(ctx, mr)
		default:
			s.log.Info("check requested", "read_data", mr.ReadData)
			rep, err = m.Check(ctx, mr)
		}
		resp.Report = rep
		if err != nil {
			resp.Err = toWire(err)
		}
		return resp, nil
	case opList:
		after, err := optRef(req.Old)
		if err != nil {
			return resp, err
		}
		limit := min(max(req.Limit, 1), MaxRefs)
		refs, err := s.ns.ListPage(ctx, after, limit+1)
		if err != nil {
			return resp, err
		}
		resp.More = len(refs) > limit
		resp.Refs = refsToWire(refs[:min(len(refs), limit)])
	case opDelete:
		if len(req.Refs) > MaxRefs {
			return resp, fmt.Errorf("%w: %d refs in one delete (max %d)", ErrProtocol, len(req.Refs), MaxRefs)
		}
		refs, err := refsFromWire(req.Refs)
		if err != nil {
			return resp, err
		}
		return resp, s.ns.Delete(ctx, refs)
	case opAdminClients:
		resp.Clients = s.srv.clients(s)
	case opAdminRoots:
		return s.srv.adminRoots(ctx, s)
	case opAdminRootDel:
		ns, err := s.adminNamespace(req.Namespace)
		if err != nil {
			return resp, err
		}
		head, err := refFromWire(req.Old)
		if err != nil {
			return resp, err
		}
		// DeleteRoot compares and deletes in one step: a push that lands
		// meanwhile makes it stale, and is not deleted unseen.
		if err := ns.DeleteRoot(ctx, req.Root, head); err != nil {
			return resp, err
		}
		s.log.Info("root deleted", "target_namespace", req.Namespace, "root", req.Root, "head", head.Short())
	case opAdminHistory:
		ns, err := s.adminNamespace(req.Namespace)
		if err != nil {
			return resp, err
		}
		return historyPage(ctx, ns, req)
	case opShareCreate:
		if req.Share == nil || req.GraceNS == nil || *req.GraceNS <= 0 {
			return resp, fmt.Errorf("%w: share.create needs a share and a ttl", ErrProtocol)
		}
		info := *req.Share
		ref, err := refFromWire(info.Ref)
		if err != nil {
			return resp, err
		}
		// The object must be the namespace's, and a file or a tree.
		b, err := s.ns.Get(ctx, ref)
		if err != nil {
			return resp, fmt.Errorf("share %s: %w", ref.Short(), err)
		}
		switch typ, err := index.TypeOf(b); {
		case err != nil:
			return resp, fmt.Errorf("%w: share %s: %v", ErrProtocol, ref.Short(), err)
		case typ == index.TypeFile:
			info.Kind = "file"
		case typ == index.TypeTree:
			info.Kind = "dir"
		default:
			return resp, fmt.Errorf("%w: a share names a file or a directory", ErrProtocol)
		}
		info.Namespace = s.ns.Name()
		token, created, err := s.srv.tokens.createShare(info, time.Duration(*req.GraceNS))
		if err != nil {
			return resp, err
		}
		s.log.Info("share created", "id", created.ID, "name", created.Name, "expires", created.Expires.Time().UTC())
		resp.Token, resp.Share = token, &created
	case opInviteCreate:
		return s.inviteCreate(req)
	case opShareList:
		shares, err := s.srv.tokens.Shares(s.ns.Name())
		resp.Shares = shares
		return resp, err
	case opShareUpdate:
		if req.GraceNS == nil || *req.GraceNS < 0 {
			return resp, fmt.Errorf("%w: share.update needs a ttl (0 revokes)", ErrProtocol)
		}
		var expires time.Time
		if *req.GraceNS > 0 {
			expires = s.srv.opts.Now().Add(time.Duration(*req.GraceNS))
		}
		info, err := s.srv.tokens.updateShare(s.ns.Name(), req.ID, expires)
		if err != nil {
			return resp, err
		}
		if expires.IsZero() {
			s.log.Info("share revoked", "id", req.ID)
			s.srv.closeToken(req.ID)
		}
		resp.Share = &info
	case opAdminPolicy:
		if _, err := s.adminNamespace(req.Namespace); err != nil {
			return resp, err
		}
		if req.Policy != nil {
			if err := s.srv.SetPolicy(req.Namespace, req.Policy); err != nil {
				return resp, err
			}
			s.log.Info("retention policy set", "namespace", req.Namespace, "policy", string(req.Policy))
		}
		p, err := s.srv.Policy(req.Namespace)
		resp.Report = p
		return resp, err
	case opAdminNS:
		if _, err := s.adminNamespace(req.Namespace); err != nil {
			return resp, err
		}
		if req.Settings != nil {
			var st NamespaceSettings
			if err := json.Unmarshal(req.Settings, &st); err != nil {
				return resp, fmt.Errorf("%w: settings: %v", ErrProtocol, err)
			}
			if err := s.srv.SetSettings(req.Namespace, st); err != nil {
				return resp, err
			}
			s.log.Info("namespace settings set", "namespace", req.Namespace, "settings", string(req.Settings))
		}
		st, err := s.srv.Settings(req.Namespace)
		if err != nil {
			return resp, err
		}
		resp.Report, err = json.Marshal(st)
		return resp, err
	case opQuota:
		used, limit, err := s.ns.Usage(ctx)
		resp.Used, resp.Limit = used, limit
		return resp, err
	case opAdminQuota:
		ns, err := s.adminNamespace(req.Namespace)
		if err != nil {
			return resp, err
		}
		if req.Quota != nil {
			if err := ns.SetQuota(ctx, *req.Quota); err != nil {
				return resp, fmt.Errorf("%w: %v", ErrProtocol, err)
			}
			s.log.Info("quota set", "namespace", req.Namespace, "bytes", *req.Quota)
		}
		used, limit, err := ns.Usage(ctx)
		resp.Used, resp.Limit = used, limit
		return resp, err
	case opTokenCreate:
		if _, err := s.adminNamespace(req.Namespace); err != nil && req.Namespace != AllNamespaces {
			return resp, err
		}
		if req.Namespace == AllNamespaces && s.tok.Namespace != AllNamespaces {
			return resp, fmt.Errorf("%w: only a server admin token can make tokens for every namespace", ErrPermission)
		}
		perm, err := ParsePerm(req.Perm)
		if err != nil {
			return resp, fmt.Errorf("%w: %v", ErrProtocol, err)
		}
		token, info, err := s.srv.tokens.Create(req.Namespace, perm, req.Label)
		if err != nil {
			return resp, err
		}
		s.log.Info("token created", "id", info.ID, "for", info.Namespace, "perm", info.Perm)
		resp.Token, resp.Tokens = token, []TokenInfo{info}
	case opTokenList:
		all, err := s.srv.tokens.List()
		if err != nil {
			return resp, err
		}
		for _, t := range all {
			if s.tok.Namespace == AllNamespaces || t.Namespace == s.tok.Namespace {
				resp.Tokens = append(resp.Tokens, t)
			}
		}
	case opTokenRevoke:
		all, err := s.srv.tokens.List()
		if err != nil {
			return resp, err
		}
		i := slices.IndexFunc(all, func(t TokenInfo) bool { return t.ID == req.ID })
		if i < 0 || (s.tok.Namespace != AllNamespaces && all[i].Namespace != s.tok.Namespace) {
			return resp, fmt.Errorf("token %s: %w", req.ID, cas.ErrNotFound)
		}
		if err := canRevoke(s.tok, all[i], all); err != nil {
			return resp, err
		}
		if err := s.srv.tokens.Revoke(req.ID); err != nil {
			return resp, err
		}
		s.log.Info("token revoked", "id", req.ID)
		s.srv.closeToken(req.ID)
	default:
		return resp, fmt.Errorf("%w: unknown op %q", ErrProtocol, req.Op)
	}
	return resp, nil
}

// canRevoke refuses what would lock admins out: a token revoking itself,
// and the last server admin token going (ferry token reset-admin, on the
// server's machine, makes a new one if it is lost).
func canRevoke(by tokenRecord, target TokenInfo, all []TokenInfo) error {
	if target.ID == by.ID {
		return fmt.Errorf("%w: a token cannot revoke itself; revoke it with another admin token", ErrPermission)
	}
	isServerAdmin := func(t TokenInfo) bool { return t.Namespace == AllNamespaces && Perm(t.Perm) == PermAdmin }
	if isServerAdmin(target) {
		admins := 0
		for _, t := range all {
			if isServerAdmin(t) {
				admins++
			}
		}
		if admins <= 1 {
			return fmt.Errorf("%w: %s is the last server admin token", ErrPermission, target.ID)
		}
	}
	return nil
}

// bitmap packs bits, bit i for bits[i].
func bitmap(bits []bool) []byte {
	out := make([]byte, (len(bits)+7)/8)
	for i, b := range bits {
		if b {
			out[i/8] |= 1 << (i % 8)
		}
	}
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// adminNamespace opens a namespace an admin names, within the token's
// reach.
func (s *session) adminNamespace(name string) (*cas.Namespace, error) {
	if s.tok.Namespace != AllNamespaces && name != s.tok.Namespace {
		return nil, fmt.Errorf("%w: the token is for namespace %q", ErrPermission, s.tok.Namespace)
	}
	return s.srv.db.Namespace(name)
}

func historyPage(ctx context.Context, ns *cas.Namespace, req Request) (Response, error) {
	var resp Response
	hist, err := ns.History(ctx, req.Root)
	if err != nil {
		return resp, err
	}
	limit := req.Limit
	if limit <= 0 || limit > MaxHistoryPage {
		limit = MaxHistoryPage
	}
	for _, h := range hist {
		if h.Seq <= req.After {
			continue
		}
		if len(resp.History) == limit {
			resp.More = true
			break
		}
		resp.History = append(resp.History, WireHistory{Seq: h.Seq, Time: h.Time.UnixNano(), Ref: append([]byte(nil), h.Ref[:]...)})
	}
	return resp, nil
}

// clients lists the sessions an admin may see.
func (s *Server) clients(viewer *session) []ClientInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ClientInfo
	for c := range s.sessions {
		if viewer.tok.Namespace != AllNamespaces && c.nsName() != viewer.tok.Namespace {
			continue
		}
		out = append(out, ClientInfo{
			Addr: c.conn.RemoteAddr().String(), Namespace: c.nsName(), Device: c.device, Perm: string(c.tok.Perm),
			TokenID: c.tok.ID, Since: At(c.since), BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(), Version: c.client,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since < out[j].Since })
	return out
}

func (s *Server) adminRoots(ctx context.Context, viewer *session) (Response, error) {
	var resp Response
	spaces, err := s.db.Namespaces(ctx)
	if err != nil {
		return resp, err
	}
	for _, name := range spaces {
		if viewer.tok.Namespace != AllNamespaces && name != viewer.tok.Namespace {
			continue
		}
		ns, err := s.db.Namespace(name)
		if err != nil {
			return resp, err
		}
		roots, err := ns.Roots(ctx)
		if err != nil {
			return resp, err
		}
		for _, root := range roots {
			head, err := ns.Head(ctx, root)
			if err != nil {
				return resp, err
			}
			hist, err := ns.History(ctx, root)
			if err != nil {
				return resp, err
			}
			info := RootInfo{Namespace: name, Root: root, Head: head[:], Versions: len(hist)}
			if len(hist) > 0 {
				info.Updated = At(hist[len(hist)-1].Time)
			}
			resp.RootsOf = append(resp.RootsOf, info)
		}
	}
	return resp, nil
}

// closeToken closes every connection the revoked token opened.
func (s *Server) closeToken(id string) {
	s.mu.Lock()
	var victims []*quic.Conn
	for c := range s.sessions {
		if c.tok.ID == id {
			victims = append(victims, c.conn)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.CloseWithError(closeRevoked, "token revoked")
	}
}
