// Live dashboard: a snapshot, then one message per event, over /ws/dashboard/.
// Reconnects with backoff and starts again from a fresh snapshot each time.
(() => {
  "use strict";

  const FEED_LIMIT = 50;
  const HISTORY_SECONDS = 600;
  const drivers = new Map(); // driverId -> {driverId, username, available, version, timestamp}
  const history = []; // [secondsSinceEpoch, onlineCount]
  let eventCount = 0;
  let retryDelay = 500;

  const $ = (id) => document.getElementById(id);

  function setConnection(state, text) {
    const pill = $("connection-state");
    pill.dataset.state = state;
    pill.className = `pill pill-${state}`;
    pill.textContent = text;
  }

  function onlineCount() {
    let count = 0;
    for (const driver of drivers.values()) count += driver.available ? 1 : 0;
    return count;
  }

  function timeOf(timestamp) {
    return timestamp ? new Date(timestamp).toLocaleTimeString() : "never";
  }

  function renderDrivers() {
    const list = $("drivers");
    list.replaceChildren();
    const sorted = [...drivers.values()].sort((a, b) => a.username.localeCompare(b.username));
    if (sorted.length === 0) {
      list.innerHTML = '<li class="muted">No drivers yet.</li>';
    }
    for (const driver of sorted) {
      const item = document.createElement("li");
      item.dataset.driverId = driver.driverId;
      const name = document.createElement("span");
      name.className = "driver-name";
      name.textContent = driver.username;
      const since = document.createElement("span");
      since.className = "muted small";
      since.textContent = `v${driver.version} · ${timeOf(driver.timestamp)}`;
      const badge = document.createElement("span");
      badge.className = `badge ${driver.available ? "badge-online" : "badge-offline"}`;
      badge.textContent = driver.available ? "online" : "offline";
      item.append(name, since, badge);
      list.append(item);
    }
    $("online-count").textContent = onlineCount();
    $("driver-count").textContent = drivers.size;
  }

  function addToFeed(event) {
    const driver = drivers.get(event.driverId);
    const item = document.createElement("li");
    const when = document.createElement("time");
    when.dateTime = event.timestamp;
    when.textContent = timeOf(event.timestamp);
    const what = document.createElement("span");
    what.textContent = `${driver ? driver.username : event.driverId.slice(0, 8)} went ${event.available ? "online" : "offline"}`;
    const dot = document.createElement("span");
    dot.className = `dot ${event.available ? "dot-online" : "dot-offline"}`;
    item.append(dot, what, when);
    const feed = $("feed");
    feed.prepend(item);
    while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
    $("feed-empty").hidden = true;
    $("event-count").textContent = ++eventCount;
  }

  function recordHistory() {
    const now = Date.now() / 1000;
    history.push([now, onlineCount()]);
    while (history.length > 1 && history[1][0] < now - HISTORY_SECONDS) history.shift();
    drawChart(now);
  }

  // A step chart (the count changes in jumps) over the last minutes, at least one minute wide.
  function drawChart(now) {
    const span = Math.max(60, Math.min(HISTORY_SECONDS, now - history[0][0]));
    const max = Math.max(1, drivers.size);
    const x = (t) => Math.max(0, ((t - (now - span)) / span) * 300).toFixed(1);
    const y = (count) => (58 - (count / max) * 54).toFixed(1);
    let line = `M${x(history[0][0])},${y(history[0][1])}`;
    for (let i = 1; i < history.length; i++) {
      line += ` H${x(history[i][0])} V${y(history[i][1])}`;
    }
    line += " H300";
    $("online-line").setAttribute("d", line);
    $("online-area").setAttribute("d", `${line} V60 H${x(history[0][0])} Z`);
    $("chart-max").textContent = max;
    $("chart-span").textContent = span >= 120 ? `${Math.round(span / 60)} minutes` : `${Math.round(span)} seconds`;
  }

  function applySnapshot(message) {
    drivers.clear();
    for (const driver of message.drivers) drivers.set(driver.driverId, driver);
    renderDrivers();
    recordHistory();
  }

  function applyEvent(event) {
    const known = drivers.get(event.driverId);
    if (known && event.version <= known.version) return; // older than what is shown
    drivers.set(event.driverId, {
      username: known ? known.username : `driver ${event.driverId.slice(0, 8)}`,
      ...known,
      driverId: event.driverId,
      available: event.available,
      version: event.version,
      timestamp: event.timestamp,
    });
    renderDrivers();
    addToFeed(event);
    recordHistory();
  }

  function connect() {
    setConnection("connecting", "Connecting…");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/dashboard/`);
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "snapshot") {
        applySnapshot(data);
        retryDelay = 500;
        setConnection("live", "Live");
      } else if (data.type === "driver-status-changed") {
        applyEvent(data);
      }
    };
    socket.onclose = () => {
      const delay = retryDelay * (0.8 + Math.random() * 0.4);
      retryDelay = Math.min(retryDelay * 2, 10000);
      setConnection("offline", `Disconnected · retrying in ${Math.ceil(delay / 1000)}s`);
      setTimeout(connect, delay);
    };
  }

  setInterval(recordHistory, 5000);
  connect();
})();
