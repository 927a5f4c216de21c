// bext demo: proves static JS is delivered, and tries /events and /ws/echo from the page.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("js-status");
  if (status) {
    status.textContent = "JavaScript loaded";
    status.classList.add("ok");
  }
  const clock = document.getElementById("clock");
  if (clock) clock.textContent = new Date().toISOString();

  const output = document.getElementById("output");
  const log = (line) => {
    if (output) output.textContent += line + "\n";
  };

  const sse = document.getElementById("sse-start");
  if (sse) {
    sse.addEventListener("click", () => {
      const source = new EventSource("/events");
      source.addEventListener("tick", (event) => {
        log("sse: " + event.data);
        if (event.lastEventId === "5") source.close();
      });
      source.onerror = () => source.close();
    });
  }

  const ws = document.getElementById("ws-start");
  if (ws) {
    ws.addEventListener("click", () => {
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const socket = new WebSocket(scheme + "//" + location.host + "/ws/echo");
      socket.onopen = () => socket.send("hello from " + navigator.userAgent.split(" ")[0]);
      socket.onmessage = (event) => {
        log("ws echo: " + event.data);
        socket.close();
      };
      socket.onerror = () => log("ws: failed (the echo needs DEMO_SERVER=uvicorn)");
    });
  }
});
