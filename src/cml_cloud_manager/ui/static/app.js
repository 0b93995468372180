// Minimal live fleet view: the snapshot fills the table, events update it.
const rows = new Map();
const tbody = document.querySelector("#workers tbody");
const log = document.querySelector("#events");
const live = document.querySelector("#live");

function cell(text) { const td = document.createElement("td"); td.textContent = text ?? ""; return td; }

function render(worker) {
  const tr = document.createElement("tr");
  tr.dataset.id = worker.id;
  const cpu = worker.cpu_percent == null ? "–" : `${worker.cpu_percent.toFixed(0)}%`;
  for (const value of [worker.name, worker.aws_region, worker.aws_instance_id, worker.status,
                       worker.service_status, cpu, worker.labs_count]) tr.append(cell(value));
  const old = rows.get(worker.id);
  if (old) old.replaceWith(tr); else tbody.append(tr);
  rows.set(worker.id, tr);
}

async function refetch(id) {
  const response = await fetch(`/api/workers/${id}`);
  if (response.ok) render(await response.json());
}

const source = new EventSource("/api/events/stream");
source.addEventListener("connected", () => { live.textContent = "live"; live.className = "badge live"; });
source.addEventListener("snapshot", (e) => { tbody.replaceChildren(); rows.clear(); JSON.parse(e.data).workers.forEach(render); });
source.addEventListener("reset", () => location.reload());
source.onerror = () => { live.textContent = "reconnecting…"; live.className = "badge"; };
source.onmessage = (e) => {
  const event = JSON.parse(e.data);
  const li = document.createElement("li");
  li.textContent = `${event.time} ${event.type} ${event.subject ?? ""}`;
  log.prepend(li);
  if (event.type.startsWith("worker.") && event.subject) refetch(event.subject);
};
