// The console's scripts: the live job counts, and the Cancel and Retry buttons. Both call
// JobService's Twirp JSON RPCs at the console's own origin (/console/twirp/...), which the
// console forwards to job_svc as the operator; the session cookie signs the calls.
"use strict";

async function rpc(method, body) {
  const answer = await fetch(`/console/twirp/mcsv.v1.JobService/${method}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body || {}),
  });
  const data = await answer.json();
  if (!answer.ok) throw new Error(`${data.code}: ${data.msg}`);
  return data;
}

function stateCount(queue, state) {
  const value = queue[state];
  return typeof value === "string" ? parseInt(value, 10) : value || 0;  // int64 is a JSON string
}

function renderStats(table, queues) {
  const states = table.dataset.states.split(",");
  const body = document.createElement("tbody");
  for (const queue of queues) {
    const row = body.insertRow();
    const head = document.createElement("th");
    const link = document.createElement("a");
    link.href = `/console/jobs?queue=${encodeURIComponent(queue.queue)}`;
    link.textContent = queue.queue;
    head.append(link);
    row.append(head);
    for (const state of states) {
      const cell = row.insertCell();
      cell.className = "n";
      const count = stateCount(queue, state);
      if (count) {
        const a = document.createElement("a");
        a.href = `/console/jobs?queue=${encodeURIComponent(queue.queue)}&state=${state}`;
        a.textContent = String(count);
        cell.append(a);
      } else {
        cell.textContent = "0";
      }
    }
  }
  if (!queues.length) {
    const cell = body.insertRow().insertCell();
    cell.colSpan = states.length + 1;
    cell.textContent = "No jobs yet.";
  }
  table.tBodies[0].replaceWith(body);
}

function liveStats() {
  const table = document.getElementById("stats");
  const badge = document.getElementById("live");
  if (!table) return;
  const refresh = async () => {
    try {
      const stats = await rpc("GetQueueStats", {});
      renderStats(table, stats.queues || []);
      badge.classList.remove("stale");
      badge.textContent = "live " + new Date().toLocaleTimeString();
    } catch (error) {
      badge.classList.add("stale");
      badge.textContent = "stale: " + error.message;
    }
  };
  setInterval(refresh, 2000);
}

function buttons() {
  const result = document.getElementById("rpc-result");
  for (const button of document.querySelectorAll("button.rpc")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const answer = await rpc(button.dataset.rpc, { id: button.dataset.id });
        result.textContent = `${button.dataset.rpc}: the job is now ${answer.job.state}`;
        setTimeout(() => location.reload(), 300);
      } catch (error) {
        result.textContent = error.message;
        result.className = "error";
        button.disabled = false;
      }
    });
  }
}

function followJob() {
  // A job that has not finished is shown again every 1.5 s until it has.
  const state = document.getElementById("job-state");
  if (state && state.dataset.final === "no") setTimeout(() => location.reload(), 1500);
}

document.addEventListener("DOMContentLoaded", () => {
  liveStats();
  buttons();
  followJob();
});
