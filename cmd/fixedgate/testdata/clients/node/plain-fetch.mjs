// What does NOT work on Node 20: HTTPS_PROXY is set, but fetch connects directly.
const res = await fetch(process.env.TARGET_URL, { signal: AbortSignal.timeout(20000) });
console.log(res.status, await res.text());
