package failover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/cairn-pki/cairn/acmedns"
)

// Keys under the coordinator's prefix:
//
//	leader/<lease>        etcd election (concurrency.Election)
//	views/<controller>    a controller's recent observations, on its session lease
//	ops/drained/<site>    a drained site (persistent until undrained)
//	ops/move/<n>-<ctrl>   an operator's move, on a short lease; the leader consumes it
const (
	keyLeader  = "leader"
	keyViews   = "views/"
	keyDrained = "ops/drained/"
	keyMove    = "ops/move/"
	keyOps     = "ops/"
	// moveTTL: an operator's move that no leader took within this long is dropped.
	moveTTL = 30
)

// View is one controller's probe view, shared with the others.
type View struct {
	Controller string        `json:"controller"`
	API        string        `json:"api,omitempty"`
	Published  time.Time     `json:"published"`
	Obs        []Observation `json:"observations"`
}

// PendingMove is an operator's move waiting for the leader.
type PendingMove struct {
	Key  string
	Site string
}

// Shared is what the controllers share, read in one request.
type Shared struct {
	Leader  string // the elected controller's ID ("" while none)
	Views   []View
	Drained map[string]bool
	Moves   []PendingMove
}

// Coordinator joins a controller to the others through etcd: it campaigns
// for leadership with etcd's election, publishes the controller's view on
// its session lease, and carries operator commands. Only the leader writes
// DNS; the DNS prerequisite still fences a leader that lost its lease.
type Coordinator struct {
	Client *clientv3.Client
	Prefix string
	ID     string
	API    string // this controller's status URL, shown to the others
	TTL    time.Duration
	Log    *slog.Logger
	// OnChange is called when leadership or operator keys change.
	OnChange func()

	mu       sync.Mutex
	session  *concurrency.Session
	election *concurrency.Election
	leading  bool
}

// Run campaigns until ctx ends; a lost session (partition, etcd leader
// change) ends leadership at once and a new session campaigns again. On
// return it resigns and revokes its lease, so its view disappears and
// another controller takes over without waiting for the TTL.
func (k *Coordinator) Run(ctx context.Context) {
	go k.watchOps(ctx)
	for ctx.Err() == nil {
		s, err := concurrency.NewSession(k.Client, concurrency.WithTTL(max(2, int(k.TTL.Seconds()))), concurrency.WithContext(ctx))
		if err != nil {
			if ctx.Err() == nil {
				k.Log.Warn("etcd session", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		el := concurrency.NewElection(s, k.Prefix+keyLeader)
		k.mu.Lock()
		k.session, k.election = s, el
		k.mu.Unlock()
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-s.Done():
			case <-cctx.Done():
			}
			cancel()
		}()
		if err := el.Campaign(cctx, k.ID); err == nil {
			k.setLeading(true)
			k.Log.Info("elected leader: this controller decides and writes DNS", "id", k.ID)
			<-cctx.Done()
		}
		cancel()
		if k.setLeading(false) {
			k.Log.Warn("leadership lost", "id", k.ID, "shutdown", ctx.Err() != nil)
		}
		k.mu.Lock()
		k.session, k.election = nil, nil
		k.mu.Unlock()
		// Resign and revoke the lease (the view goes with it) on a context
		// of their own: s.Close would revoke with ctx, already ended at
		// shutdown, and leave the view until the TTL.
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		el.Resign(rctx)
		s.Orphan()
		if _, err := k.Client.Revoke(rctx, s.Lease()); err != nil {
			k.Log.Warn("etcd: revoking the session lease", "err", err)
		}
		rcancel()
		if ctx.Err() == nil {
			sleep(ctx, 200*time.Millisecond)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (k *Coordinator) setLeading(v bool) (changed bool) {
	k.mu.Lock()
	changed = k.leading != v
	k.leading = v
	k.mu.Unlock()
	if changed && k.OnChange != nil {
		k.OnChange()
	}
	return changed
}

// Leading reports whether this controller holds the leadership.
func (k *Coordinator) Leading() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.leading
}

// StillLeader asks etcd, right before a DNS write, whether this
// controller's election key is still the one that won.
func (k *Coordinator) StillLeader(ctx context.Context) bool {
	k.mu.Lock()
	el, leading := k.election, k.leading
	k.mu.Unlock()
	if !leading || el == nil || el.Key() == "" {
		return false
	}
	resp, err := k.Client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())).Commit()
	return err == nil && resp.Succeeded
}

func (k *Coordinator) watchOps(ctx context.Context) {
	for ctx.Err() == nil {
		for range k.Client.Watch(clientv3.WithRequireLeader(ctx), k.Prefix+keyOps, clientv3.WithPrefix()) {
			if k.OnChange != nil {
				k.OnChange()
			}
		}
		sleep(ctx, time.Second)
	}
}

// Publish writes this controller's view on its session lease.
func (k *Coordinator) Publish(ctx context.Context, v View) error {
	k.mu.Lock()
	s := k.session
	k.mu.Unlock()
	if s == nil {
		return errors.New("no etcd session yet")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = k.Client.Put(ctx, k.Prefix+keyViews+k.ID, string(b), clientv3.WithLease(s.Lease()))
	return err
}

// Snapshot reads every shared key in one request.
func (k *Coordinator) Snapshot(ctx context.Context) (Shared, error) {
	resp, err := k.Client.Get(ctx, k.Prefix, clientv3.WithPrefix())
	if err != nil {
		return Shared{}, err
	}
	sh := Shared{Drained: map[string]bool{}}
	var leaderRev int64
	for _, kv := range resp.Kvs {
		key := strings.TrimPrefix(string(kv.Key), k.Prefix)
		switch {
		case strings.HasPrefix(key, keyLeader+"/"):
			// The election's winner is the key created first.
			if leaderRev == 0 || kv.CreateRevision < leaderRev {
				leaderRev, sh.Leader = kv.CreateRevision, string(kv.Value)
			}
		case strings.HasPrefix(key, keyViews):
			var v View
			if err := json.Unmarshal(kv.Value, &v); err != nil {
				k.Log.Warn("unreadable view in etcd; ignored", "key", string(kv.Key), "err", err)
				continue
			}
			sh.Views = append(sh.Views, v)
		case strings.HasPrefix(key, keyDrained):
			sh.Drained[strings.TrimPrefix(key, keyDrained)] = true
		case strings.HasPrefix(key, keyMove):
			sh.Moves = append(sh.Moves, PendingMove{Key: string(kv.Key), Site: string(kv.Value)})
		}
	}
	return sh, nil
}

// Submit records an operator command for the leader: drains persist
// until undrained; a move waits at most 30 s for a leader to take it.
func (k *Coordinator) Submit(ctx context.Context, c Command) error {
	switch c.Type {
	case "drain":
		_, err := k.Client.Put(ctx, k.Prefix+keyDrained+c.Site, k.ID+" "+time.Now().UTC().Format(time.RFC3339))
		return err
	case "undrain":
		_, err := k.Client.Delete(ctx, k.Prefix+keyDrained+c.Site)
		return err
	case "move":
		lease, err := k.Client.Grant(ctx, moveTTL)
		if err != nil {
			return err
		}
		key := k.Prefix + keyMove + strconv.FormatInt(time.Now().UnixNano(), 10) + "-" + k.ID
		_, err = k.Client.Put(ctx, key, c.Site, clientv3.WithLease(lease.ID))
		return err
	}
	return fmt.Errorf("unknown command %q", c.Type)
}

// Ack removes operator moves the leader has handled.
func (k *Coordinator) Ack(ctx context.Context, moves []PendingMove) error {
	if len(moves) == 0 {
		return nil
	}
	ops := make([]clientv3.Op, 0, len(moves))
	for _, m := range moves {
		ops = append(ops, clientv3.OpDelete(m.Key))
	}
	_, err := k.Client.Txn(ctx).Then(ops...).Commit()
	return err
}

// A published view carries the last viewWindow of observations (the
// others read at least every second, and keep what they already took),
// at most maxViewObs, rewritten at most every publishEvery: about 3 KB/s
// of etcd writes per controller for three sites.
const (
	viewWindow   = 5 * time.Second
	shareEvery   = 250 * time.Millisecond
	maxViewObs   = 200
	publishEvery = time.Second
)

func (c *Controller) viewAge() time.Duration {
	if c.Policy.ViewMaxAge > 0 {
		return c.Policy.ViewMaxAge
	}
	return 30 * time.Second
}

// share publishes this controller's view and reads the others': their new
// observations, the drained sites, and (for the leader) operator moves.
// Without etcd the controller does not lead: DNS is left alone.
func (c *Controller) share(ctx context.Context, prev State) (obs []Observation, cmds []Command, moves []PendingMove, leading bool) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	now := time.Now()
	var err error
	if now.Sub(c.published) >= publishEvery {
		cut := now.Add(-viewWindow)
		c.mu.Lock()
		i := 0
		for i < len(c.mine) && (c.mine[i].At.Before(cut) || len(c.mine)-i > maxViewObs) {
			i++
		}
		c.mine = append([]Observation(nil), c.mine[i:]...)
		view := View{Controller: c.ID, API: c.Coord.API, Published: now, Obs: append([]Observation{}, c.mine...)}
		c.mu.Unlock()
		if err = c.Coord.Publish(cctx, view); err == nil {
			c.published = now
		}
	}
	var sh Shared
	if err == nil {
		sh, err = c.Coord.Snapshot(cctx)
	}
	if err != nil {
		if !c.etcdDown {
			c.Log.Error("etcd unreachable: this controller neither leads nor shares its view until it is back", "err", err)
		}
		c.etcdDown = true
		return nil, nil, nil, false
	}
	if c.etcdDown {
		c.Log.Info("etcd reachable again")
		c.etcdDown = false
	}
	leading = c.Coord.Leading() && sh.Leader == c.ID
	var views []ViewStatus
	for _, v := range sh.Views {
		fresh := now.Sub(v.Published) <= c.viewAge()
		views = append(views, ViewStatus{Controller: v.Controller, API: v.API, Published: v.Published, Observations: len(v.Obs), Fresh: fresh})
		if v.Controller == c.ID || !fresh {
			continue
		}
		last := c.seen[v.Controller]
		for _, o := range v.Obs {
			if o.At.After(last) && o.Vantage == v.Controller {
				obs = append(obs, o)
				if o.At.After(c.seen[v.Controller]) {
					c.seen[v.Controller] = o.At
				}
			}
		}
	}
	for _, name := range c.Policy.Sites {
		if ss := prev.Sites[name]; ss != nil && ss.Drained != sh.Drained[name] {
			typ := "undrain"
			if sh.Drained[name] {
				typ = "drain"
			}
			cmds = append(cmds, Command{Type: typ, Site: name})
		}
	}
	if leading {
		for _, m := range sh.Moves {
			cmds = append(cmds, Command{Type: "move", Site: m.Site})
		}
		moves = sh.Moves
	}
	c.mu.Lock()
	c.leaderID, c.views = sh.Leader, views
	c.mu.Unlock()
	return obs, cmds, moves, leading
}

// follow keeps a controller that does not lead in step with DNS: the
// active site and the hold-down come from the ACME name and its epoch
// record, and moves the leader made show in this controller's status.
func (c *Controller) follow(ctx context.Context, next *State, prev State) {
	next.Active, next.LastMove = prev.Active, prev.LastMove
	if time.Since(c.followed) < time.Second {
		return
	}
	c.followed = time.Now()
	cur, err := c.DNS.Read(ctx)
	if err != nil {
		return
	}
	if site := c.Spec.SiteAt(cur.Addrs...); site != "" {
		next.Active = site
	}
	if !cur.Epoch.Time.IsZero() {
		next.LastMove = cur.Epoch.Time
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.moves); cur.Epoch.N > 0 && (n == 0 || c.moves[n-1].Epoch < cur.Epoch.N) {
		c.moves = append(c.moves, Move{From: prev.Active, To: cur.Epoch.Site, Reason: cur.Epoch.Reason + " (by " + cur.Epoch.Controller + ")",
			At: cur.Epoch.Time, Epoch: cur.Epoch.N, Propagation: []acmedns.Propagation{}})
	}
}

func (c *Controller) ackMoves(ctx context.Context, moves []PendingMove) error {
	if c.Coord == nil || len(moves) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Coord.Ack(cctx, moves)
}
