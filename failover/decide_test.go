package failover

import (
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// lessGC: the simulations below allocate a state per step (Decide is
// pure) and keep little; collecting less often takes a third of their CPU
// off make test (TestDecideProperties alone: 25 s of CPU → 16 s) and
// changes nothing they check.
func lessGC(t *testing.T) {
	old := debug.SetGCPercent(400)
	t.Cleanup(func() { debug.SetGCPercent(old) })
}

func policy() Policy {
	return Policy{DownAfter: 3, UpAfter: 5, StablePeriod: 20 * time.Second, HoldDown: 60 * time.Second,
		Failback: "manual", Quorum: 1, Priority: map[string]int{"a": 1, "b": 2, "c": 3}, Sites: []string{"a", "b", "c"}}
}

func ok(site string, sec int) Observation {
	return Observation{Site: site, Vantage: "v1", At: t0.Add(time.Duration(sec) * time.Second), OK: true, Deep: true, ReachesOthers: true}
}

func hardFail(site string, sec int) Observation {
	return Observation{Site: site, Vantage: "v1", At: t0.Add(time.Duration(sec) * time.Second), Hard: true, ReachesOthers: true}
}

func deepFail(site string, sec int) Observation {
	return Observation{Site: site, Vantage: "v1", At: t0.Add(time.Duration(sec) * time.Second), Deep: true, ReachesOthers: true}
}

func kind(o Observation, k string) Observation { o.Kind = k; return o }

// healthyAll brings every site to healthy by t=30 s.
func healthyAll(p Policy) State {
	s := NewState(p, "a", t0)
	var obs []Observation
	for i := 0; i < 6; i++ {
		for _, site := range p.Sites {
			obs = append(obs, ok(site, i*5))
		}
	}
	s, _ = Decide(p, s, obs, nil, t0.Add(30*time.Second))
	return s
}

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func TestDecideScenarios(t *testing.T) {
	p := policy()
	cases := []struct {
		name    string
		prep    func(Policy) State
		obs     []Observation
		cmds    []Command
		now     int
		want    []string // intent types
		active  string
		healthA Health
	}{
		{"unknown is not healthy: no move at start", func(p Policy) State { return NewState(p, "a", t0) },
			[]Observation{hardFail("a", 1), hardFail("a", 2), hardFail("a", 3)}, nil, 3, []string{IntentAlert}, "a", Down},
		{"healthy active stays", healthyAll, []Observation{ok("a", 31)}, nil, 31, nil, "a", Healthy},
		{"one hard failure: suspect, prearm TTL", healthyAll, []Observation{hardFail("a", 31)}, nil, 31, []string{IntentPrearm}, "a", Suspect},
		{"three hard failures: move to b", healthyAll, []Observation{hardFail("a", 31), hardFail("a", 32), hardFail("a", 33)}, nil, 33, []string{IntentMove}, "b", Down},
		{"deep failure confirmed once: move", healthyAll, []Observation{deepFail("a", 31), deepFail("a", 33)}, nil, 33, []string{IntentMove}, "b", Down},
		// The CA cannot sign: issuance fails every 15 s while the account
		// probe keeps passing every 2 s. The account successes must not
		// clear the issuance failures (seen in the hsm-failure drill).
		{"issuance failing between passing account probes: move", healthyAll,
			[]Observation{kind(deepFail("a", 31), "issuance"), kind(ok("a", 33), "account"), kind(ok("a", 35), "account"),
				kind(ok("a", 44), "account"), kind(deepFail("a", 46), "issuance"), kind(ok("a", 48), "account")}, nil, 48, []string{IntentMove}, "b", Down},
		{"an issuance success clears the issuance failure", healthyAll,
			[]Observation{kind(deepFail("a", 31), "issuance"), kind(ok("a", 33), "account"), kind(ok("a", 46), "issuance"), kind(deepFail("a", 48), "issuance")},
			nil, 48, []string{IntentPrearm}, "a", Suspect},
		{"a non-voting vantage cannot bring a site down", healthyAll,
			[]Observation{{Site: "a", Vantage: "v2", At: at(31), Hard: true}, {Site: "a", Vantage: "v2", At: at(32), Hard: true}, {Site: "a", Vantage: "v2", At: at(33), Hard: true}},
			nil, 33, []string{IntentPrearm}, "a", Suspect},
		{"drain the active site: move", healthyAll, nil, []Command{{Type: "drain", Site: "a"}}, 31, []string{IntentMove}, "b", Healthy},
		{"operator move to a healthy site", healthyAll, nil, []Command{{Type: "move", Site: "c"}}, 31, []string{IntentMove}, "c", Healthy},
		{"operator move to an unknown site is refused", func(p Policy) State { return NewState(p, "a", t0) }, nil, []Command{{Type: "move", Site: "b"}}, 1, []string{IntentRefused}, "a", Unknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, intents := Decide(p, tc.prep(p), tc.obs, tc.cmds, at(tc.now))
			var got []string
			for _, in := range intents {
				got = append(got, in.Type)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("intents %v, want %v (%+v)", got, tc.want, intents)
			}
			if s.Active != tc.active {
				t.Errorf("active %s, want %s", s.Active, tc.active)
			}
			if s.Sites["a"].Health != tc.healthA {
				t.Errorf("a is %s, want %s", s.Sites["a"].Health, tc.healthA)
			}
		})
	}
}

func TestHoldDownAndFailback(t *testing.T) {
	p := policy()
	s := healthyAll(p)
	s, in := Decide(p, s, []Observation{hardFail("a", 31), hardFail("a", 32), hardFail("a", 33)}, nil, at(33))
	if s.Active != "b" || len(in) != 1 {
		t.Fatalf("first move: %v %+v", s.Active, in)
	}
	// b fails 10 s later: within the hold-down, no second move.
	s, in = Decide(p, s, []Observation{hardFail("b", 40), hardFail("b", 41), hardFail("b", 43)}, nil, at(43))
	if s.Active != "b" || len(in) != 0 {
		t.Fatalf("moved within hold-down: %v %+v", s.Active, in)
	}
	// After the hold-down: move to c.
	s, in = Decide(p, s, nil, nil, at(94))
	if s.Active != "c" || len(in) != 1 || in[0].Type != IntentMove {
		t.Fatalf("after hold-down: %v %+v", s.Active, in)
	}
	// a recovers; manual failback: stays on c.
	var obs []Observation
	for i := 0; i < 10; i++ {
		obs = append(obs, ok("a", 100+i*5))
	}
	s, in = Decide(p, s, obs, nil, at(150))
	if s.Active != "c" || s.Sites["a"].Health != Healthy {
		t.Fatalf("manual failback moved or a not healthy: %v %s %+v", s.Active, s.Sites["a"].Health, in)
	}
	// Automatic failback: back to a once it has been healthy for the stable period.
	p.Failback = "automatic"
	s, in = Decide(p, s, nil, nil, at(200))
	if s.Active != "a" || len(in) != 1 {
		t.Fatalf("automatic failback: %v %+v", s.Active, in)
	}
}

func TestAllDownLeavesDNSAndAlertsOnce(t *testing.T) {
	p := policy()
	s := healthyAll(p)
	var obs []Observation
	for _, site := range p.Sites {
		obs = append(obs, hardFail(site, 31), hardFail(site, 32), hardFail(site, 33))
	}
	s, in := Decide(p, s, obs, nil, at(33))
	if s.Active != "a" || len(in) != 1 || in[0].Type != IntentAlert || !s.NoHealthy {
		t.Fatalf("all down: active %s, intents %+v", s.Active, in)
	}
	s, in = Decide(p, s, []Observation{hardFail("a", 40)}, nil, at(40))
	if len(in) != 0 {
		t.Fatalf("alert repeated: %+v", in)
	}
	// b comes back: after it is healthy the controller moves and clears the alert.
	var back []Observation
	for i := 0; i < 6; i++ {
		back = append(back, ok("b", 100+i*5))
	}
	s, in = Decide(p, s, back, nil, at(130))
	if s.Active != "b" || s.NoHealthy {
		t.Fatalf("after recovery: %s %+v", s.Active, in)
	}
}

func TestQuorumOfVantages(t *testing.T) {
	p := policy()
	p.Quorum = 2
	s := healthyAll(p)
	one := []Observation{hardFail("a", 31), hardFail("a", 32), hardFail("a", 33)}
	s, _ = Decide(p, s, one, nil, at(33))
	if s.Active != "a" {
		t.Fatal("one vantage of a quorum of two moved the name")
	}
	var two []Observation
	for i := 34; i < 37; i++ {
		two = append(two, Observation{Site: "a", Vantage: "v2", At: at(i), Hard: true, ReachesOthers: true})
	}
	s, _ = Decide(p, s, two, nil, at(37))
	if s.Active != "b" {
		t.Fatal("two vantages did not move the name")
	}
}

// Property test: random event sequences never break the safety rules.
func TestDecideProperties(t *testing.T) {
	lessGC(t)
	sequences := 100000
	if testing.Short() {
		sequences = 5000
	}
	rng := rand.New(rand.NewPCG(1, 2))
	p := policy()
	p.Quorum = 1
	vantages := []string{"v1", "v2", "v3"}
	for seq := 0; seq < sequences; seq++ {
		p.Failback = []string{"manual", "automatic"}[rng.IntN(2)]
		p.Quorum = 1 + rng.IntN(2)
		p.ViewMaxAge = []time.Duration{0, 20 * time.Second}[rng.IntN(2)]
		s := NewState(p, p.Sites[rng.IntN(3)], t0)
		now := t0
		// Per (site, vantage): the last two deep results, for the check below.
		lastDeep := map[string][2]int{} // 0 none, 1 ok, 2 fail
		lastSeen := map[string]time.Time{}
		broken := map[string]bool{}
		for step := 0; step < 30; step++ {
			now = now.Add(time.Duration(rng.IntN(8000)) * time.Millisecond)
			for _, site := range p.Sites {
				if rng.Float64() < 0.1 {
					broken[site] = !broken[site]
				}
			}
			var obs []Observation
			for n := rng.IntN(6); n > 0; n-- {
				site := p.Sites[rng.IntN(3)]
				v := vantages[rng.IntN(3)]
				okProb := 0.9
				if broken[site] {
					okProb = 0.1
				}
				o := Observation{Site: site, Vantage: v, At: now, OK: rng.Float64() < okProb, Deep: rng.Float64() < 0.6, ReachesOthers: rng.Float64() < 0.9,
					Kind: []string{"account", "issuance"}[rng.IntN(2)]}
				o.Hard = !o.OK && rng.Float64() < 0.5
				obs = append(obs, o)
				lastSeen[site+"/"+v] = now
				if o.Deep {
					k := site + "/" + v
					r := 1
					if !o.OK {
						r = 2
					}
					lastDeep[k] = [2]int{lastDeep[k][1], r}
				}
			}
			var cmds []Command
			if rng.Float64() < 0.03 {
				cmds = append(cmds, Command{Type: []string{"move", "drain", "undrain"}[rng.IntN(3)], Site: p.Sites[rng.IntN(3)]})
			}
			prevActive, prevMove := s.Active, s.LastMove
			var intents []Intent
			s, intents = Decide(p, s, obs, cmds, now)
			moves := 0
			for _, in := range intents {
				if in.Type != IntentMove {
					continue
				}
				moves++
				target := s.Sites[in.To]
				if target.Health != Healthy || target.Drained {
					t.Fatalf("seq %d step %d: moved to %s which is %s (drained %v)", seq, step, in.To, target.Health, target.Drained)
				}
				for _, v := range vantages {
					// A vantage gone quiet for longer than ViewMaxAge has no say.
					fresh := p.ViewMaxAge == 0 || now.Sub(lastSeen[in.To+"/"+v]) <= p.ViewMaxAge
					if d := lastDeep[in.To+"/"+v]; d == [2]int{2, 2} && fresh {
						t.Fatalf("seq %d step %d: moved to %s whose last two deep probes from %s failed", seq, step, in.To, v)
					}
				}
				if in.From != prevActive {
					t.Fatalf("seq %d: move from %s but active was %s", seq, in.From, prevActive)
				}
				// Only an operator may move within the hold-down.
				if in.Reason != "operator move" && !prevMove.IsZero() && now.Sub(prevMove) < p.HoldDown {
					t.Fatalf("seq %d step %d: automatic move %s after the previous one (hold-down %s)", seq, step, now.Sub(prevMove), p.HoldDown)
				}
			}
			if moves > 1 {
				t.Fatalf("seq %d step %d: %d moves in one decision", seq, step, moves)
			}
			if moves == 0 && s.Active != prevActive {
				t.Fatalf("seq %d: active changed without a move intent", seq)
			}
			if s.Active == "" {
				t.Fatalf("seq %d: the ACME name lost its answer", seq)
			}
		}
	}
}

// A vantage that went quiet longer than ViewMaxAge no longer votes.
func TestStaleViewsDoNotVote(t *testing.T) {
	p := policy()
	p.Quorum, p.ViewMaxAge, p.UpAfter, p.StablePeriod = 2, 10*time.Second, 1, 0
	s := NewState(p, "a", t0)
	// Every vantage keeps seeing b and c fine (and a, until it fails).
	fine := func(at time.Time, vs ...string) (obs []Observation) {
		for _, v := range vs {
			for _, site := range p.Sites {
				obs = append(obs, Observation{Site: site, Vantage: v, At: at, OK: true, Deep: true, ReachesOthers: true})
			}
		}
		return obs
	}
	down := func(v string, at time.Time) (obs []Observation) {
		for range 3 {
			obs = append(obs, Observation{Site: "a", Vantage: v, At: at.Add(time.Millisecond), Hard: true, ReachesOthers: true})
		}
		return obs
	}
	s, _ = Decide(p, s, fine(t0, "v1", "v2", "v3"), nil, t0)
	// v1 sees a down, then goes quiet; v2 sees it down 20 s later.
	now := t0.Add(time.Second)
	s, in := Decide(p, s, append(fine(now, "v2", "v3"), down("v1", now)...), nil, now)
	if s.Sites["a"].Health == Down || moved(in) {
		t.Fatalf("one vantage brought a down: %+v %+v", s.Sites["a"], in)
	}
	now = now.Add(20 * time.Second)
	s, in = Decide(p, s, append(fine(now, "v3"), down("v2", now)...), nil, now)
	if s.Sites["a"].Health == Down || moved(in) {
		t.Fatalf("a stale vote counted: %s %+v", s.Sites["a"].Reason, in)
	}
	// v3 agrees while v2's view is fresh: quorum.
	now = now.Add(time.Second)
	s, in = Decide(p, s, down("v3", now), nil, now)
	if s.Sites["a"].Health != Down || !moved(in) {
		t.Fatalf("two fresh votes: %s %+v", s.Sites["a"].Health, in)
	}
}

// A restarted controller resumes the sites its own history shows healthy
// until moments before; it still needs fresh deep successes, never the
// history alone; a failure, an old history or none at all resume nothing.
func TestResumeFromHistory(t *testing.T) {
	p := policy()
	p.ResumeConfirm = 2
	// 40 s of history: a and b succeed every 2 s; c failed last.
	var hist []Observation
	for sec := 0; sec <= 40; sec += 2 {
		hist = append(hist, ok("a", sec), ok("b", sec))
		if sec < 38 {
			hist = append(hist, ok("c", sec))
		}
	}
	hist = append(hist, deepFail("c", 38))
	start := at(43)
	got := Resumable(p, hist, start, 10*time.Second)
	if len(got) != 2 || !got["a"].Equal(at(40)) || !got["b"].Equal(at(40)) {
		t.Fatalf("resumable: %v", got)
	}
	if r := Resumable(p, hist, at(60), 10*time.Second); len(r) != 0 {
		t.Fatalf("a history 20 s old resumed %v", r)
	}
	if r := Resumable(p, nil, start, 10*time.Second); r != nil {
		t.Fatalf("no history resumed %v", r)
	}
	if r := Resumable(p, hist[:8], at(7), 10*time.Second); len(r) != 0 {
		t.Fatalf("6 s of history (less than the stable period) resumed %v", r)
	}

	s := NewState(p, "a", start)
	for site, when := range got {
		s.Sites[site].ResumedAt = when
	}
	// One fresh success is not enough; the second is.
	s, _ = Decide(p, s, []Observation{ok("a", 44), ok("b", 44)}, nil, at(44))
	if s.Sites["a"].Health != Unknown {
		t.Fatalf("healthy on one fresh probe: %+v", s.Sites["a"])
	}
	s, _ = Decide(p, s, []Observation{ok("a", 46), deepFail("b", 46)}, nil, at(46))
	if s.Sites["a"].Health != Healthy || !s.Sites["a"].ResumedAt.IsZero() {
		t.Fatalf("a after two fresh probes: %+v", s.Sites["a"])
	}
	// b failed once after the restart: it lost its resume and needs the full proof.
	s, _ = Decide(p, s, []Observation{ok("b", 48), ok("b", 50)}, nil, at(50))
	if s.Sites["b"].Health == Healthy || !s.Sites["b"].ResumedAt.IsZero() {
		t.Fatalf("b after a failure: %+v", s.Sites["b"])
	}
	if s.Sites["c"].Health != Unknown {
		t.Fatalf("c was never resumed: %+v", s.Sites["c"])
	}
}
