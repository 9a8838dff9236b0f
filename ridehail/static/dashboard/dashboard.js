// Live dashboard: a snapshot, then one message per event, position frames and health frames,
// over /ws/dashboard/. Reconnects with backoff and starts again from a fresh snapshot each time;
// a session that is no longer valid says so instead of retrying forever.
//
// Everything is keyed (drivers, rides, markers, list rows): an event updates what it touches,
// never the whole page, so 2,000 drivers stay cheap.
(() => {
  "use strict";

  const FEED_LIMIT = 50;
  const COLORS = { free: "#12a150", busy: "#3a5bdc", offline: "#8a93a6", waiting: "#d43d3d", assigned: "#8e44ad" };
  const HEALTH_LIMITS = { lag: 100, pending: 100, outboxSeconds: 10, staleSeconds: 15 };

  const drivers = new Map(); // driverId -> {driverId, username, available, version, timestamp}
  const rides = new Map(); // rideId -> ride (requested or assigned)
  const positions = new Map(); // driverId -> {lat, lng}
  const markers = new Map(); // driverId -> L.CircleMarker
  const pickups = new Map(); // rideId -> L.CircleMarker
  const driverRows = new Map(); // driverId -> <li>
  const rideRows = new Map(); // rideId -> <li>
  const busy = new Map(); // driverId -> rideId of their assigned ride
  const received = { status: 0, rides: 0, positions: 0 }; // what "Updates this session" counts
  let retryDelay = 500;
  let everLive = false;
  let lastHealthAt = 0;
  let fitted = false;

  const $ = (id) => document.getElementById(id);

  // -- the map ----------------------------------------------------------------------------

  const mapElement = $("map");
  const map = L.map(mapElement, { preferCanvas: true, worldCopyJump: true }).setView([20, 0], 2);
  if (mapElement.dataset.tiles) {
    const tiles = L.tileLayer(mapElement.dataset.tiles, {
      maxZoom: 19,
      attribution: '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors',
    }).addTo(map);
    // Offline (or a tile server that is down), every tile fails and the map would be blank: fall
    // back to the grid, as with RIDEHAIL_MAP_TILES="". Removing the layer also cancels the tiles
    // still loading, so the console does not fill with their errors. Once a tile has loaded, the
    // server works: a later failed tile is a gap, not a reason to drop the map.
    let tileLoaded = false;
    tiles.on("tileload", () => {
      tileLoaded = true;
    });
    tiles.on("tileerror", () => {
      if (tileLoaded || !map.hasLayer(tiles)) return;
      map.removeLayer(tiles);
      mapElement.classList.add("no-tiles");
    });
  } else {
    mapElement.classList.add("no-tiles");
  }

  function driverState(driverId) {
    const driver = drivers.get(driverId);
    if (!driver || !driver.available) return "offline";
    return busy.has(driverId) ? "busy" : "free";
  }

  function track(ride) {
    for (const [driverId, rideId] of busy) if (rideId === ride.rideId) busy.delete(driverId);
    if (ride.status === "assigned" && ride.driverId) busy.set(ride.driverId, ride.rideId);
  }

  function nameOf(driverId) {
    const driver = drivers.get(driverId);
    return driver ? driver.username : `driver ${driverId.slice(0, 8)}`;
  }

  function paintMarker(driverId) {
    const position = positions.get(driverId);
    if (!position) return;
    const state = driverState(driverId);
    let marker = markers.get(driverId);
    if (!marker) {
      marker = L.circleMarker([position.lat, position.lng], { radius: 6, weight: 1.5, fillOpacity: 0.9 }).addTo(map);
      marker.bindTooltip(() => `${nameOf(driverId)} · ${driverState(driverId)}`);
      markers.set(driverId, marker);
    } else {
      marker.setLatLng([position.lat, position.lng]);
    }
    marker.setStyle({ color: "#fff", fillColor: COLORS[state] });
    marker.options.state = state;
  }

  function paintPickup(ride) {
    let marker = pickups.get(ride.rideId);
    const color = ride.status === "assigned" ? COLORS.assigned : COLORS.waiting;
    if (!marker) {
      marker = L.circleMarker([ride.pickup.lat, ride.pickup.lng], { radius: 8, weight: 2, fillOpacity: 0.35 }).addTo(map);
      marker.bindTooltip(() => rideLabel(rides.get(ride.rideId) || ride));
      pickups.set(ride.rideId, marker);
    }
    marker.setStyle({ color, fillColor: color });
  }

  function removePickup(rideId) {
    const marker = pickups.get(rideId);
    if (marker) marker.remove();
    pickups.delete(rideId);
  }

  function fitOnce() {
    if (fitted) return;
    const points = [...positions.values()].map((p) => [p.lat, p.lng]);
    for (const ride of rides.values()) points.push([ride.pickup.lat, ride.pickup.lng]);
    if (points.length === 0) return;
    map.fitBounds(L.latLngBounds(points).pad(0.2), { maxZoom: 15 });
    fitted = true;
  }

  // -- counts, lists and the feed -----------------------------------------------------------

  function renderCounts() {
    let online = 0;
    for (const driver of drivers.values()) online += driver.available ? 1 : 0;
    $("online-count").textContent = online;
    $("drivers-empty").hidden = drivers.size > 0;
    $("driver-count").textContent = drivers.size;
    $("busy-count").textContent = busy.size;
    $("waiting-count").textContent = rides.size - busy.size;
    $("rides-empty").hidden = rides.size > 0;
    showHiddenRides();
  }

  // The Rides list scrolls: say how many rows are below its edge, so a cut row is not the end.
  // Once per frame at most: measuring rows forces a layout, and events come in bursts.
  let ridesHintQueued = false;
  function showHiddenRides() {
    if (ridesHintQueued) return;
    ridesHintQueued = true;
    requestAnimationFrame(() => {
      ridesHintQueued = false;
      countHiddenRides();
    });
  }

  function countHiddenRides() {
    const list = $("rides");
    let below = 0;
    const edge = list.getBoundingClientRect().bottom;
    for (const row of list.children) if (row.getBoundingClientRect().bottom > edge + 1) below += 1;
    const more = $("rides-more");
    more.hidden = below === 0;
    more.textContent = `↓ ${below} more — scroll the list`;
  }

  function countReceived(kind, n = 1) {
    received[kind] += n;
    $("event-count").textContent = (received.status + received.rides + received.positions).toLocaleString();
    $("event-kinds").textContent =
      `${received.status.toLocaleString()} driver status · ${received.rides.toLocaleString()} rides · ` +
      `${received.positions.toLocaleString()} positions`;
  }

  function timeOf(timestamp) {
    return timestamp ? new Date(timestamp).toLocaleTimeString() : "never";
  }

  // When the driver's status last changed, in words: the timestamp is that change's.
  function sinceOf(driver) {
    if (!driver.timestamp) return driver.available ? "online" : "never online";
    const at = new Date(driver.timestamp).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return `${driver.available ? "online" : "offline"} since ${at}`;
  }

  function age(since) {
    const seconds = Math.max(0, Math.round((Date.now() - new Date(since).getTime()) / 1000));
    return seconds < 90 ? `${seconds}s` : `${Math.round(seconds / 60)} min`;
  }

  function driverRow(driver) {
    let row = driverRows.get(driver.driverId);
    if (!row) {
      row = document.createElement("li");
      row.dataset.driverId = driver.driverId;
      const name = document.createElement("span");
      name.className = "driver-name";
      const since = document.createElement("span");
      since.className = "muted small";
      const badge = document.createElement("span");
      row.append(name, since, badge);
      driverRows.set(driver.driverId, row);
      $("drivers").append(row);
    }
    const [name, since, badge] = row.children;
    name.textContent = driver.username;
    since.textContent = sinceOf(driver);
    badge.className = `badge ${driver.available ? "badge-online" : "badge-offline"}`;
    badge.textContent = driver.available ? "online" : "offline";
  }

  // The pickup distance the matcher chose the driver at: "850 m", "1.2 km".
  function distanceText(km) {
    return km < 1 ? `${Math.round(km * 1000)} m` : `${km.toFixed(1)} km`;
  }

  function rideLabel(ride) {
    const rider = ride.riderName || `rider ${ride.riderId.slice(0, 8)}`;
    if (ride.status !== "assigned") return `${rider} · waiting`;
    const pickup = ride.pickupDistanceKm == null ? "" : ` · pickup ${distanceText(ride.pickupDistanceKm)}`;
    return `${rider} · ${nameOf(ride.driverId)} on the way${pickup}`;
  }

  function rideRow(ride) {
    let row = rideRows.get(ride.rideId);
    if (!row) {
      row = document.createElement("li");
      row.dataset.rideId = ride.rideId;
      const dot = document.createElement("span");
      const what = document.createElement("span");
      const when = document.createElement("span");
      when.className = "muted small ride-age";
      row.append(dot, what, when);
      rideRows.set(ride.rideId, row);
      $("rides").append(row);
    }
    const [dot, what, when] = row.children;
    row.dataset.status = ride.status;
    dot.className = `dot ${ride.status === "assigned" ? "dot-assigned" : "dot-waiting"}`;
    what.textContent = rideLabel(ride);
    when.textContent = age(ride.requestedAt);
  }

  function removeRideRow(rideId) {
    const row = rideRows.get(rideId);
    if (row) row.remove();
    rideRows.delete(rideId);
  }

  function addToFeed(text, kind, timestamp) {
    const item = document.createElement("li");
    const dot = document.createElement("span");
    dot.className = `dot dot-${kind}`;
    const what = document.createElement("span");
    what.textContent = text;
    const when = document.createElement("time");
    when.dateTime = timestamp;
    when.textContent = timeOf(timestamp);
    item.append(dot, what, when);
    const feed = $("feed");
    feed.prepend(item);
    while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
    $("feed-empty").hidden = true;
  }

  // -- the workers' health ------------------------------------------------------------------

  // How a rides process matches: greedy (window 0), or batches and what the last one did.
  function matcherText(matcher) {
    if (!matcher.windowSeconds) return "matching: greedy (window 0), each request at once";
    const last = matcher.lastBatch;
    if (!last) return `matching: batched (window ${matcher.windowSeconds}s), no batch yet`;
    const solve = last.solveMs < 0.1 ? "< 0.1" : Number(last.solveMs).toFixed(1); // a batch of one is near-instant
    return `matching: last batch ${last.size} → ${last.assigned} assigned, solve ${solve} ms at ${timeOf(last.at)}`;
  }

  function renderHealth(health) {
    lastHealthAt = Date.now();
    const items = [];
    let bad = false;
    for (const worker of health.workers) {
      const down = worker.processes.length === 0;
      bad = bad || down;
      const where = worker.processes.map((p) => `${p.transport} · ${p.host}/${p.pid}`).join(", ");
      items.push([`${worker.name}: ${down ? "not running" : `alive (${where})`}`, down, { worker: worker.name }]);
      const matching = worker.processes.filter((p) => p.matcher);
      for (const p of matching) {
        const which = matching.length > 1 ? ` (${p.host}/${p.pid})` : "";
        items.push([`${matcherText(p.matcher)}${which}`, false, { matcher: `${p.host}/${p.pid}` }]);
      }
    }
    for (const group of health.groups) {
      const red = (group.lag ?? 0) > HEALTH_LIMITS.lag || group.pending > HEALTH_LIMITS.pending;
      bad = bad || red;
      items.push([`${group.topic} · ${group.group}: lag ${group.lag ?? "?"}, pending ${group.pending}`, red]);
    }
    for (const [topic, count] of Object.entries(health.deadLetters)) {
      bad = bad || count > 0;
      items.push([`${topic} dead letters: ${count}`, count > 0]);
    }
    const outbox = health.outbox;
    const stuck = outbox.pending > 0 && (outbox.oldestAgeSeconds ?? 0) > HEALTH_LIMITS.outboxSeconds;
    bad = bad || stuck;
    items.push([`outbox: ${outbox.pending} waiting${outbox.pending ? `, oldest ${outbox.oldestAgeSeconds}s` : ""}`, stuck]);
    const list = $("health-items");
    list.replaceChildren(
      ...items.map(([text, red, data]) => {
        const item = document.createElement("li");
        item.textContent = text;
        if (red) item.className = "red";
        Object.assign(item.dataset, data);
        return item;
      }),
    );
    $("health").dataset.state = bad ? "bad" : "ok";
  }

  function tick() {
    for (const ride of rides.values()) {
      const row = rideRows.get(ride.rideId);
      if (row) row.children[2].textContent = age(ride.requestedAt);
    }
    if (lastHealthAt) {
      const seconds = Math.round((Date.now() - lastHealthAt) / 1000);
      $("health-age").textContent = `updated ${seconds}s ago`;
      if (seconds > HEALTH_LIMITS.staleSeconds) $("health").dataset.state = "stale";
    }
  }

  // -- messages -----------------------------------------------------------------------------

  function applySnapshot(message) {
    drivers.clear();
    rides.clear();
    busy.clear();
    positions.clear();
    for (const marker of markers.values()) marker.remove();
    markers.clear();
    for (const rideId of [...pickups.keys()]) removePickup(rideId);
    driverRows.clear();
    rideRows.clear();
    $("drivers").replaceChildren();
    $("rides").replaceChildren();
    const sorted = [...message.drivers].sort((a, b) => a.username.localeCompare(b.username));
    for (const driver of sorted) {
      drivers.set(driver.driverId, driver);
      driverRow(driver);
    }
    for (const ride of message.rides) {
      rides.set(ride.rideId, ride);
      track(ride);
      rideRow(ride);
      paintPickup(ride);
    }
    for (const position of message.positions) positions.set(position.driverId, position);
    for (const driverId of positions.keys()) paintMarker(driverId);
    renderCounts();
    fitOnce();
  }

  function applyStatus(event) {
    const known = drivers.get(event.driverId);
    if (known && event.version <= known.version) return; // older than what is shown
    // The server names the driver in the frame (the page may not have known them at its snapshot).
    const driver = {
      ...known,
      username: event.username,
      driverId: event.driverId,
      available: event.available,
      version: event.version,
      timestamp: event.timestamp,
    };
    drivers.set(event.driverId, driver);
    driverRow(driver);
    paintMarker(event.driverId);
    renderCounts();
    countReceived("status");
    addToFeed(`${driver.username} went ${event.available ? "online" : "offline"}`, event.available ? "free" : "offline", event.timestamp);
  }

  function applyRide(event) {
    const known = rides.get(event.rideId);
    if (known && event.version <= known.version) return;
    const rider = event.riderName || `rider ${event.riderId.slice(0, 8)}`;
    const before = known ? known.driverId : null;
    track(event);
    if (event.status === "requested" || event.status === "assigned") {
      rides.set(event.rideId, event);
      rideRow(event);
      paintPickup(event);
    } else {
      rides.delete(event.rideId);
      removeRideRow(event.rideId);
      removePickup(event.rideId);
    }
    for (const driverId of [before, event.driverId]) if (driverId) paintMarker(driverId);
    renderCounts();
    countReceived("rides");
    const by = event.driverId ? ` · ${nameOf(event.driverId)}` : "";
    const kind = { requested: "waiting", assigned: "assigned", completed: "free", cancelled: "offline", expired: "offline" };
    addToFeed(`ride for ${rider} ${event.status}${by}`, kind[event.status], event.timestamp);
  }

  function applyPositions(frame) {
    for (const position of frame.positions) {
      positions.set(position.driverId, position);
      paintMarker(position.driverId);
    }
    countReceived("positions", frame.positions.length);
    fitOnce();
  }

  // -- the connection -------------------------------------------------------------------------

  function setConnection(state, text) {
    const pill = $("connection-state");
    pill.dataset.state = state;
    pill.className = `pill pill-${state}`;
    pill.textContent = text;
    document.body.classList.toggle("stale", state !== "live");
  }

  function signedOut() {
    setConnection("signed-out", "Signed out");
    $("signed-out").hidden = false;
  }

  // Is this page's session still allowed to watch? The page itself answers: a redirect to the
  // sign-in page (signed out) or a 403 (not staff) means no; anything else, try again later.
  async function stillAllowed() {
    try {
      const response = await fetch(location.pathname, { redirect: "manual", credentials: "same-origin" });
      return response.type !== "opaqueredirect" && response.status !== 403;
    } catch {
      return true; // the server is away: that is what retrying is for
    }
  }

  function connect() {
    setConnection("connecting", everLive ? "Reconnecting…" : "Connecting…");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/dashboard/`);
    let opened = false;
    socket.onopen = () => {
      opened = true;
    };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "snapshot") {
        applySnapshot(data);
        retryDelay = 500;
        everLive = true;
        setConnection("live", "Live");
      } else if (data.type === "driver-status-changed") {
        applyStatus(data);
      } else if (data.type === "ride-status-changed") {
        applyRide(data);
      } else if (data.type === "positions") {
        applyPositions(data);
      } else if (data.type === "health") {
        renderHealth(data);
      }
    };
    socket.onclose = async (event) => {
      if (event.code === 4403 || (!opened && !(await stillAllowed()))) {
        signedOut();
        return;
      }
      if (event.code === 4429) {
        setConnection("offline", "Too many dashboards open in this session");
        return;
      }
      const delay = retryDelay * (0.8 + Math.random() * 0.4);
      retryDelay = Math.min(retryDelay * 2, 10000);
      setConnection("offline", `Disconnected · showing stale data · retrying in ${Math.ceil(delay / 1000)}s`);
      setTimeout(connect, delay);
    };
  }

  // What the map shows, for the browser tests and the curious (canvas markers have no DOM).
  window.ridehailDashboard = Object.freeze({
    markerState: (driverId) => markers.get(driverId)?.options.state ?? null,
    markerCount: () => markers.size,
    pickupCount: () => pickups.size,
  });

  $("rides").addEventListener("scroll", showHiddenRides, { passive: true });
  setInterval(tick, 1000);
  connect();
})();
