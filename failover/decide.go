// Package failover moves the ACME name to a healthy site. Its core,
// Decide, is pure: observations and operator commands in, the next state
// and intents out. The DNS applier turns a move intent into one RFC 2136
// update guarded by a compare-and-swap prerequisite.
package failover

import (
	"fmt"
	"maps"
	"sort"
	"time"
)

// Health of a site as the controller judges it.
type Health string

// Site states: unknown → healthy ⇄ suspect → down → recovering → healthy.
const (
	Unknown    Health = "unknown" // no verdict yet: not healthy
	Healthy    Health = "healthy"
	Suspect    Health = "suspect" // failures seen, not yet enough to act
	Down       Health = "down"
	Recovering Health = "recovering" // succeeding again, not yet for long enough
)

// Observation is one probe result as the core needs it.
type Observation struct {
	Site    string    `json:"site"`
	Vantage string    `json:"vantage"` // the prober that saw it
	At      time.Time `json:"at"`
	OK      bool      `json:"ok"`
	// Deep results come from account and issuance probes; shallow ones
	// (dns, tls, directory, nonce) can only bring a site down when hard.
	Deep bool `json:"deep,omitempty"`
	// Kind is the probe kind: a success clears the deep failures of its
	// own kind only (a passing account probe says nothing about a CA that
	// cannot sign).
	Kind string `json:"kind,omitempty"`
	// Hard failures mean the site is unreachable (refused, timeout).
	Hard bool `json:"hard,omitempty"`
	// ReachesOthers is false when this vantage could reach no other site
	// either: its view is its own problem and it does not vote.
	ReachesOthers bool `json:"reachesOthers,omitempty"`
}

// Command is an operator's instruction.
type Command struct {
	Type string // "move", "drain", "undrain"
	Site string
}

// Policy is the decision policy (from the spec's failover section).
type Policy struct {
	DownAfter    int           // consecutive hard failures that bring a site down
	UpAfter      int           // consecutive deep successes needed to be healthy
	StablePeriod time.Duration // and for at least this long
	HoldDown     time.Duration // least time between two moves
	Failback     string        // "manual" or "automatic"
	Quorum       int           // voting vantages that must see a site down (≥1)
	// ViewMaxAge: a vantage not heard from for this long neither votes nor
	// counts (0: views never expire).
	ViewMaxAge time.Duration
	// ResumeConfirm: fresh deep successes that make a resumed site (one
	// the controller's history showed healthy until just before it
	// started) healthy, instead of UpAfter over StablePeriod.
	ResumeConfirm int
	Priority      map[string]int
	// Sites lists every site (order breaks priority ties).
	Sites []string
}

// vantageView is one prober's running counts for one site.
type vantageView struct {
	HardFails int `json:"hardFails"`
	// DeepFails: consecutive deep failures (any kind; a deep success of
	// any kind resets it): the site is failing, not yet down. KindFails:
	// consecutive failures per deep probe kind, reset only by a success
	// of that kind: two bring the site down.
	DeepFails  int            `json:"deepFails"`
	KindFails  map[string]int `json:"kindFails,omitempty"`
	DeepOKs    int            `json:"deepOKs"`
	FirstOK    time.Time      `json:"firstOK"` // start of the current success streak
	Voting     bool           `json:"voting"`
	LastSeenAt time.Time      `json:"lastSeenAt"`
}

// SiteState is the controller's view of one site.
type SiteState struct {
	Health  Health                  `json:"health"`
	Since   time.Time               `json:"since"`
	Drained bool                    `json:"drained"`
	Reason  string                  `json:"reason,omitempty"`
	Views   map[string]*vantageView `json:"views"`
	// Blocked says why the site must not become the active site although
	// it may be healthy (revocations made while it was down not yet in
	// its CRLs); the controller sets it before each decision.
	Blocked string `json:"blocked,omitempty"`
	// NotReady says why the site is not what the spec says (the profiles
	// its directory advertises differ); the controller sets it before
	// each decision. A site that is not ready is never chosen while a
	// ready one can be (failover, failback, an operator's move); it is
	// the last resort when the active site is down or drained and no
	// ready site is healthy. The active site is not moved away for it.
	NotReady string `json:"notReady,omitempty"`
	// ResumedAt is set on a site that was healthy in this controller's
	// history until then (just before it started): ResumeConfirm fresh
	// deep successes make it healthy. A failure clears it.
	ResumedAt time.Time `json:"resumedAt,omitzero"`
}

// State is everything Decide remembers between calls.
type State struct {
	Active   string                `json:"active"`
	LastMove time.Time             `json:"lastMove"`
	Sites    map[string]*SiteState `json:"sites"`
	// NoHealthy is set while the active site is down and no site is
	// healthy: DNS stays as it is and an alert is raised.
	NoHealthy bool `json:"noHealthy"`
}

// Intent types.
const (
	IntentMove       = "move"        // point the ACME name at To
	IntentPrearm     = "prearm"      // the active site is suspect: lower the TTL now
	IntentAlert      = "alert"       // no healthy site: DNS left unchanged
	IntentClearAlert = "clear-alert" // a healthy site exists again
	IntentRefused    = "refused"     // an operator command that was not carried out
)

// Cause is why a move was made (the label of cairn_failover_moves_total).
type Cause string

// Move causes.
const (
	CauseDown     Cause = "down"     // the active site is down
	CauseDrain    Cause = "drain"    // the active site was drained
	CauseOperator Cause = "operator" // an operator's move
	CauseFailback Cause = "failback" // automatic failback to a preferred site
)

// Intent is what the controller should do.
type Intent struct {
	Type   string `json:"type"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Reason string `json:"reason"`
	// Cause is set on moves.
	Cause Cause `json:"cause,omitempty"`
}

// NewState starts with every site unknown and the given active site (what
// DNS says now).
func NewState(p Policy, active string, now time.Time) State {
	s := State{Active: active, Sites: map[string]*SiteState{}}
	for _, name := range p.Sites {
		s.Sites[name] = &SiteState{Health: Unknown, Since: now, Views: map[string]*vantageView{}}
	}
	return s
}

// Clone copies a state deeply (Decide never mutates its input).
func (s State) Clone() State {
	c := s
	c.Sites = map[string]*SiteState{}
	for name, ss := range s.Sites {
		cp := *ss
		cp.Views = map[string]*vantageView{}
		for v, vv := range ss.Views {
			vc := *vv
			vc.KindFails = maps.Clone(vv.KindFails)
			cp.Views[v] = &vc
		}
		c.Sites[name] = &cp
	}
	return c
}

// deepFailsToDown: a failed deep probe confirmed once more by the same
// kind brings a site down. Two kinds failing once each do not: one short
// burst of server errors can fail an account and an issuance probe that
// happen to run within it (probes fail fast on a server error), while
// the controller confirms every deep failure with a rerun of its kind a
// second later (Controller.Recheck), so a real fault costs no time.
const deepFailsToDown = 2

// Decide folds observations and commands into the state and says what to
// do. It is pure and deterministic.
func Decide(p Policy, prev State, obs []Observation, cmds []Command, now time.Time) (State, []Intent) {
	s := prev.Clone()
	for _, name := range p.Sites {
		if s.Sites[name] == nil {
			s.Sites[name] = &SiteState{Health: Unknown, Since: now, Views: map[string]*vantageView{}}
		}
	}
	sorted := append([]Observation(nil), obs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].At.Before(sorted[j].At) })
	for _, o := range sorted {
		if ss := s.Sites[o.Site]; ss != nil {
			observe(ss, o)
		}
	}
	for _, name := range p.Sites {
		judge(p, s.Sites[name], now)
	}

	var intents []Intent
	for _, c := range cmds {
		intents = append(intents, command(p, &s, c, now)...)
	}
	intents = append(intents, selectActive(p, &s, now)...)
	return s, intents
}

func observe(ss *SiteState, o Observation) {
	v := ss.Views[o.Vantage]
	if v == nil {
		v = &vantageView{}
		ss.Views[o.Vantage] = v
	}
	v.Voting = o.ReachesOthers
	v.LastSeenAt = o.At
	switch {
	case o.OK && o.Deep:
		if v.DeepOKs == 0 {
			v.FirstOK = o.At
		}
		v.DeepOKs++
		v.DeepFails, v.HardFails = 0, 0
		delete(v.KindFails, o.Kind)
	case o.OK:
		v.HardFails = 0
	case o.Deep:
		if v.KindFails == nil {
			v.KindFails = map[string]int{}
		}
		v.KindFails[o.Kind]++
		v.DeepFails++
		v.DeepOKs = 0
		if o.Hard {
			v.HardFails++
		}
	default:
		v.DeepOKs = 0
		if o.Hard {
			v.HardFails++
		}
	}
}

func maxValue(m map[string]int) int {
	n := 0
	for _, v := range m {
		n = max(n, v)
	}
	return n
}

// judge moves the site through its states from the vantages' views.
func judge(p Policy, ss *SiteState, now time.Time) {
	quorum := max(1, p.Quorum)
	downVotes, failing, upViews := 0, 0, 0
	var stableSince time.Time
	for _, v := range ss.Views {
		if p.ViewMaxAge > 0 && now.Sub(v.LastSeenAt) > p.ViewMaxAge {
			continue // a controller that went quiet (crashed, partitioned) has no say
		}
		kindFails := maxValue(v.KindFails)
		isDown := v.HardFails >= max(1, p.DownAfter) || kindFails >= deepFailsToDown
		if v.HardFails > 0 || v.DeepFails > 0 || kindFails > 0 {
			failing++
		}
		if isDown && v.Voting {
			downVotes++
		}
		if v.DeepOKs >= max(1, p.UpAfter) {
			upViews++
			if stableSince.IsZero() || v.FirstOK.Before(stableSince) {
				stableSince = v.FirstOK
			}
		}
	}
	set := func(h Health, reason string) {
		if ss.Health != h {
			ss.Health, ss.Since, ss.Reason = h, now, reason
		}
	}
	if failing > 0 {
		ss.ResumedAt = time.Time{}
	}
	resumed := !ss.ResumedAt.IsZero() && ss.Health == Unknown && deepOKs(ss) >= max(1, p.ResumeConfirm)
	switch {
	case downVotes >= quorum:
		set(Down, fmt.Sprintf("%d of %d required vantages see it down", downVotes, quorum))
	case failing > 0:
		switch ss.Health {
		case Healthy, Suspect:
			set(Suspect, "failures seen")
		case Recovering:
			set(Down, "failed again while recovering")
		}
	case resumed:
		set(Healthy, fmt.Sprintf("healthy in history until %s before the start, confirmed by %d fresh deep probes",
			ss.ResumedAt.UTC().Format(time.TimeOnly), deepOKs(ss)))
		ss.ResumedAt = time.Time{}
	case upViews > 0 && now.Sub(stableSince) >= p.StablePeriod:
		set(Healthy, fmt.Sprintf("%d deep successes over %s", p.UpAfter, now.Sub(stableSince).Round(time.Second)))
	case upViews > 0 || anySuccess(ss):
		if ss.Health == Down || ss.Health == Recovering {
			set(Recovering, "succeeding again")
		} else if ss.Health == Suspect {
			set(Healthy, "failures cleared")
		}
	}
}

// deepOKs is the longest current run of deep successes of any vantage.
func deepOKs(ss *SiteState) int {
	n := 0
	for _, v := range ss.Views {
		n = max(n, v.DeepOKs)
	}
	return n
}

// Resumable replays a controller's own recent history (observations up to
// start, oldest first) through the same judgement and returns, per site
// it shows healthy at start whose last deep success is no older than
// within, the time of that success. A brand-new controller has no
// history and resumes nothing.
func Resumable(p Policy, history []Observation, start time.Time, within time.Duration) map[string]time.Time {
	if len(history) == 0 || within <= 0 {
		return nil
	}
	s, _ := Decide(p, NewState(p, "", history[0].At), history, nil, start)
	last := map[string]time.Time{}
	for _, o := range history {
		if o.OK && o.Deep && o.At.After(last[o.Site]) {
			last[o.Site] = o.At
		}
	}
	out := map[string]time.Time{}
	for name, ss := range s.Sites {
		if ss.Health == Healthy && !last[name].IsZero() && start.Sub(last[name]) <= within {
			out[name] = last[name]
		}
	}
	return out
}

func anySuccess(ss *SiteState) bool {
	for _, v := range ss.Views {
		if v.DeepOKs > 0 {
			return true
		}
	}
	return false
}

func (p Policy) better(a, b string) bool {
	pa, pb := p.Priority[a], p.Priority[b]
	if pa != pb {
		return pa < pb
	}
	return indexOf(p.Sites, a) < indexOf(p.Sites, b)
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return len(xs)
}

// best is the healthy, undrained, ready site with the best priority,
// other than except; "" if none.
func best(p Policy, s *State, except string) string { return pick(p, s, except, false) }

// pick is best among the ready sites, or among those that are not
// (notReady).
func pick(p Policy, s *State, except string, notReady bool) string {
	choice := ""
	for _, name := range p.Sites {
		ss := s.Sites[name]
		if name == except || ss.Health != Healthy || ss.Drained || ss.Blocked != "" || (ss.NotReady != "") != notReady {
			continue
		}
		if choice == "" || p.better(name, choice) {
			choice = name
		}
	}
	return choice
}

func (s *State) move(to string, cause Cause, reason string, now time.Time) Intent {
	in := Intent{Type: IntentMove, From: s.Active, To: to, Reason: reason, Cause: cause}
	s.Active, s.LastMove = to, now
	return in
}

func command(p Policy, s *State, c Command, now time.Time) []Intent {
	ss := s.Sites[c.Site]
	if ss == nil {
		return []Intent{{Type: IntentRefused, To: c.Site, Reason: fmt.Sprintf("%s: no site %q", c.Type, c.Site)}}
	}
	switch c.Type {
	case "drain":
		ss.Drained = true
	case "undrain":
		ss.Drained = false
	case "move":
		if c.Site == s.Active {
			return nil
		}
		if ss.Health != Healthy || ss.Drained {
			return []Intent{{Type: IntentRefused, To: c.Site, Reason: fmt.Sprintf("move to %s refused: it is %s%s, not healthy", c.Site, ss.Health, drainedNote(ss))}}
		}
		if ss.Blocked != "" {
			return []Intent{{Type: IntentRefused, To: c.Site, Reason: fmt.Sprintf("move to %s refused: %s", c.Site, ss.Blocked)}}
		}
		if ss.NotReady != "" {
			return []Intent{{Type: IntentRefused, To: c.Site, Reason: fmt.Sprintf("move to %s refused: not ready: %s", c.Site, ss.NotReady)}}
		}
		// An operator's move ignores the hold-down: it is deliberate.
		return []Intent{s.move(c.Site, CauseOperator, "operator move", now)}
	default:
		return []Intent{{Type: IntentRefused, Reason: "unknown command " + c.Type}}
	}
	return nil
}

func drainedNote(ss *SiteState) string {
	if ss.Drained {
		return " and drained"
	}
	return ""
}

// selectActive keeps the active site while it is usable; otherwise moves
// to the best healthy site, respecting the hold-down, and never to a site
// that is not positively healthy. With no healthy site DNS is left alone.
func selectActive(p Policy, s *State, now time.Time) []Intent {
	cur := s.Sites[s.Active]
	held := !s.LastMove.IsZero() && now.Sub(s.LastMove) < p.HoldDown
	var out []Intent
	activeBad := cur == nil || cur.Health == Down || cur.Drained
	if activeBad {
		to, lastResort := best(p, s, s.Active), ""
		if to == "" {
			// A site that works but is not what the spec says beats one
			// that is down (or drained for an upgrade that re-renders it).
			if to = pick(p, s, s.Active, true); to != "" {
				lastResort = fmt.Sprintf("; %s is not ready (%s), and no ready site is healthy", to, s.Sites[to].NotReady)
			}
		}
		switch {
		case to == "":
			if !s.NoHealthy {
				out = append(out, Intent{Type: IntentAlert, From: s.Active, Reason: "active site " + s.Active + " is unusable and no site is healthy: DNS left unchanged"})
			}
			s.NoHealthy = true
			return out
		case held:
			return out
		default:
			cause, reason := CauseDown, "active site "+s.Active+" is down"
			if cur != nil && cur.Drained {
				cause, reason = CauseDrain, "active site "+s.Active+" is drained"
			}
			if cur != nil && cur.Reason != "" && cur.Health == Down {
				reason += " (" + cur.Reason + ")"
			}
			out = append(out, s.move(to, cause, reason+lastResort, now))
		}
	} else if cur.Health == Suspect {
		out = append(out, Intent{Type: IntentPrearm, From: s.Active, Reason: "active site " + s.Active + " is suspect"})
	} else if p.Failback == "automatic" && !held {
		if to := best(p, s, ""); to != "" && to != s.Active && p.better(to, s.Active) &&
			now.Sub(s.Sites[to].Since) >= p.StablePeriod {
			out = append(out, s.move(to, CauseFailback, "failback to "+to+" (healthy for "+now.Sub(s.Sites[to].Since).Round(time.Second).String()+")", now))
		}
	}
	if s.NoHealthy && (best(p, s, "") != "" || pick(p, s, "", true) != "") {
		s.NoHealthy = false
		out = append(out, Intent{Type: IntentClearAlert, Reason: "a healthy site exists again"})
	}
	return out
}
