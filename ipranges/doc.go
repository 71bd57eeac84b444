// Package ipranges holds the contract fixedgate publishes at /ip-ranges.json: every ingress and
// egress address the proxy uses, announced at least the notice period (14 days) before it is
// used. The state file the operator maintains with `fixedgate ipranges …` is the document that
// is served; status is derived from the dates and a clock, never stored. The proxy binds and
// dials only from addresses the document says are active (or draining) at that moment.
//
// This comment is the contract's specification; Validate and CheckSuccessor are its code.
//
// # The document
//
// schema_version (1), sync_token (decimal Unix milliseconds of the last change), created_at,
// notice_days, prefixes and changelog, as DESIGN.md shows. A prefix has cidr, class (ipv4 or
// ipv6), direction (ingress or egress), service, facility, published, enabled and retired
// (null until retirement is scheduled). Times are RFC 3339; fixedgate writes them in UTC and in
// whole seconds, and reads any offset (converting to UTC). Parse is strict: unknown fields,
// missing fields, wrong types, a second JSON value after the document and schema versions other
// than 1 are errors. The one exception is a per-prefix "status", accepted and ignored, so that
// what `ipranges show` prints (or /ip-ranges.json serves) can be fed back as a state file.
//
// Status at a time t: retired when retired <= t; otherwise announced when t < enabled; otherwise
// draining when a retirement is scheduled, active when not. The proxy may use a prefix while it
// is active or draining (InUse). An announcement withdrawn before its enabled date (retired <
// enabled) goes from announced to retired and is never used.
//
// # Rules of one document (Validate)
//
//   - notice_days is at least 14 and equals the configured notice (ipranges.notice) in days.
//   - cidr is canonical: a valid prefix with no host bits set (p == p.Masked()), no IPv6 zone,
//     and IPv4 written as IPv4 (203.0.113.10/32), never as IPv4-mapped IPv6. class matches the
//     family; direction is ingress or egress; service is not empty.
//   - No two prefixes of one direction overlap (equal, or one containing the other). The same
//     prefix may be listed once as ingress and once as egress.
//   - created_at <= published <= enabled, and retired (when set) >= published.
//   - The initial set is the prefixes with published == enabled == created_at: that is how
//     `ipranges init` writes the first set, active at once because nobody depends on it yet.
//     Every other prefix has enabled >= published + notice.
//   - sync_token is a decimal count of Unix milliseconds, not before created_at. Changelog
//     sync_tokens strictly increase and none exceeds the document's; each entry's "at" is not
//     after its own sync_token's time; action is init, announce, retire or prune; cidr is
//     canonical.
//
// A document can pose an addition as part of the initial set by copying created_at into both
// dates; Validate alone cannot tell, which is why every new version is also checked against
// the one it replaces.
//
// # Rules between versions (CheckSuccessor)
//
// created_at stays; notice_days never shrinks; sync_token strictly grows (equal only for
// byte-identical content); a prefix leaves the document only RetainRetired (30 days) after its
// retirement date, so removal goes through retire; published and enabled of a listed prefix
// never move earlier, and dates that have passed do not change (a passed retirement is not
// undone); a prefix that is new in this version owes the full notice whatever its dates say,
// and its published date is not before the whole second of the previous version's sync_token
// (no backdating an announcement to skip the notice).
//
// # Operations
//
// Init, Announce, Retire and Prune take the current time from the caller (tests control the
// clock). Each appends one changelog entry per prefix it touches and bumps sync_token to
// max(previous + 1, now in milliseconds), so the token strictly grows even when the clock steps
// back; the times they record are whole seconds in UTC, never before the second of the previous
// change (so a clock that stepped back cannot backdate an announcement).
//
//   - Init: the first set, active at once; refuses an empty set, overlaps and non-canonical CIDRs.
//   - Announce: published now, enabled now + notice (at least the document's notice); refuses an
//     overlap with any listed prefix of that direction, including a retired one still listed.
//   - Retire: retired = now + after, any after >= 0 (the CLI defaults it to the notice). An
//     in-use prefix drains until then; one still announced is withdrawn and never used. Without
//     Force it refuses to leave a direction without an address in use at any moment from then
//     on (the other prefixes' [enabled, retired) spans must cover it), so the proxy does not
//     become unreachable (ingress) or unable to dial out (egress) by mistake.
//   - Prune: drops prefixes retired at least RetainRetired (30 days) ago.
//
// Update is the read-modify-write of the state file that every mutating CLI command performs:
// lock (a `.NAME.lock` file beside it), Load, change, Prune, Validate, CheckSuccessor, Save.
// Each published version is thus a valid successor of the one before; several changes batched
// into one version may not be (a retirement and its pruning must be published apart, so pollers
// see the prefix retired). Save writes atomically (temporary file in the same directory, fsync,
// rename, fsync of the directory) and refuses to write an invalid document, so a valid state
// file is never replaced by a broken or empty one; a crash can leave a `.NAME.tmp-*` file,
// which the next Update removes.
//
// Parse and Render use go-json-experiment/json (the implementation behind encoding/json/v2):
// strict reading, and the bytes the contract has always had (testdata/golden). A contract of
// 10,000 prefixes loads (parse and validate) in about 30 ms and renders in about 20 ms
// (BenchmarkLoad10k, BenchmarkRender10k).
package ipranges
