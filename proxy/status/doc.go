// Package status tells customers what the proxy's own probes see, and what its operators say
// about it: a status page (/status, HTML), a machine-readable view (/status.json) and a feed of
// incident updates (/status.atom).
//
// The lesson it encodes: customers learned of an incident late. So an operator posts an update
// as soon as something is wrong (`Post`, from the CLI), then at least every update_interval (30
// minutes by default) until it is resolved; an open incident whose last update is older is
// "overdue", shown on the page and exported by the caller as fixedgate_status_update_overdue
// (Handler.Overdue).
//
// # State
//
// The page's state is operational, degraded or outage, the worse of what the probes show (see
// Derive) and the impact the operator gave the open incident. The probes are the customer's
// path walked through the proxy's own listener, so they see what a customer sees; the operator's
// word covers what they cannot (a region, a customer's route), and an incident cannot make the
// page look better than the probes do.
//
// # Incidents
//
// Incidents live in FileName (status-incidents.json) in a state directory, the directory of the
// ip-ranges contract. Post is the only writer: under an exclusive flock on
// `.status-incidents.json.lock` beside it, it loads the file, appends one update and writes it
// atomically (a temporary file in the same directory, fsync, rename, fsync of the directory). A
// file that does not load is an error naming it and is never replaced; the file keeps the last
// MaxIncidents incidents (the newest, and the open one is always the newest). The format:
//
//	{
//	  "schema_version": 1,
//	  "incidents": [                        // oldest first
//	    {
//	      "id": "20260314T120000Z",         // UTC opening time; "-2", "-3", … if taken
//	      "updates": [                      // oldest first; only the last may be resolved
//	        {"at": "2026-03-14T12:00:00Z", "state": "investigating", "impact": "degraded",
//	         "message": "Requests through the gateway fail for some customers."}
//	      ]
//	    }
//	  ]
//	}
//
// An incident is open while its last update is not "resolved"; at most one is open, the last
// one. Its impact is its last update's (an update that names none keeps the previous one).
// Times are RFC 3339 in UTC, whole seconds, and never go backwards within an incident. Loading is
// strict: unknown fields, a schema_version other than 1, a bad state, impact or message, or a
// second open incident make the file "corrupt".
//
// The running proxy reads the file through a Store, which polls it (every 2 s) and picks up a
// post without a reload; a file that stops loading keeps the last good state and logs one error
// per change.
//
// # Views, and what is internal
//
// The admin listener serves the full view; the public listeners (status.public) serve the
// redacted one. Internal, and so only in the admin view:
//
//   - backend addresses, and which of them are ejected (routes carry counts only);
//   - a route's upstream (the backends' name and port: internal DNS, often);
//   - a probe's last error text, when it last ran (checked), when it last failed
//     (last_failure) and its consecutive failures;
//   - why the incidents file does not load (incidents_error), which names a path on the host.
//
// Everything else is public: the state, probe names, whether each is up, availability and
// latency per window and per hour, each route's host and path prefix with the fleet's counts,
// upcoming contract changes (already public at /ip-ranges.json), and the
// incidents, whose messages operators write for customers.
//
// /status.json always has state, probes, routes, contract, incident, update_overdue,
// generated_at and update_interval_s. A probe has name, up, availability {1h, 24h, 7d} (a
// fraction, null for a window without data), latency_ms {p50, p99} (the 1 h window, null
// without data), latency_ms_windows {1h, 24h, 7d} and last_24h [{hour, availability, p50_ms,
// p99_ms}] (oldest first). A route has host, path_prefix, backends, healthy and ejected (and,
// admin only, upstream and addresses). contract is null without a contract, else {"ip_ranges": "/ip-ranges.json",
// "upcoming": [{cidr, direction, status, at}]} (announced: at is when it goes live; draining: at
// is when it is retired), soonest first. incident is null when none is open, else {id, state,
// impact, opened_at, updated_at, updates: [{at, state, impact, message}]} with the newest update
// first. Times are RFC 3339 in UTC.
//
// Every response carries Cache-Control: no-store; query strings are ignored (a cache-busting
// parameter works). The HTML has no scripts and reloads itself every 60 s.
package status
