// The web app's Live tab (asrforge.serve.ui): the microphone streamed to WS /v1/audio/stream as 32-bit float
// samples at the AudioContext's own rate (the server resamples), partials shown as they change, finals as they
// are fixed. Gradio runs this with `element` bound to the tab's HTML.

// An AudioWorklet (run on the browser's audio thread) hands the samples over in blocks of about 100 ms.
const TAP = `
class Tap extends AudioWorkletProcessor {
  constructor() { super(); this.held = []; this.count = 0; }
  process(inputs) {
    const channel = inputs[0][0];
    if (channel) {
      this.held.push(channel.slice());
      this.count += channel.length;
      if (this.count >= sampleRate / 10) {
        const block = new Float32Array(this.count);
        let at = 0;
        for (const part of this.held) { block.set(part, at); at += part.length; }
        this.port.postMessage(block, [block.buffer]);
        this.held = []; this.count = 0;
      }
    }
    return true;
  }
}
registerProcessor("asrforge-tap", Tap);
`;
const $ = (selector) => element.querySelector(selector);
const status = $(".af-status"), partial = $(".af-partial"), finals = $(".af-finals");
const start = $(".af-start"), stop = $(".af-stop"), model = $(".af-model"), key = $(".af-key");
let socket = null, context = null, microphone = null, source = null, tap = null;

function say(text, error) {
  status.textContent = text;
  status.classList.toggle("af-error", Boolean(error));
}

function clock(seconds) {
  const m = Math.floor(seconds / 60), s = (seconds % 60).toFixed(1).padStart(4, "0");
  return m + ":" + s;
}

function release() {
  if (tap) { tap.disconnect(); tap.port.onmessage = null; }
  if (source) source.disconnect();
  if (microphone) microphone.getTracks().forEach((track) => track.stop());
  if (context) context.close();
  tap = source = microphone = context = null;
  start.disabled = false;
  stop.disabled = true;
  model.disabled = false;
}

function show(event) {
  if (event.type === "partial") {
    partial.textContent = event.text;
  } else if (event.type === "final") {
    partial.textContent = "";
    if (!event.text.trim()) return;
    const item = document.createElement("li");
    const time = document.createElement("span");
    time.className = "af-time";
    time.textContent = clock(event.start) + "–" + clock(event.end);
    item.append(time, document.createTextNode(event.text.trim()));
    finals.append(item);
  } else if (event.type === "ready") {
    say("Listening: speak now. Press Stop to end.");
  } else if (event.type === "error") {
    say(event.message, true);
  } else if (event.type === "done") {
    release();
    say("Stopped. " + finals.children.length + " final result(s).");
  }
}

async function begin() {
  if (key && !key.value) { say("This server needs its API key: type it in the key box first.", true); return; }
  start.disabled = true;
  model.disabled = true;
  try {
    microphone = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
  } catch (e) {
    release();
    say("The microphone could not be opened (" + e.name + "): allow this page to use it and try again.", true);
    return;
  }
  context = new AudioContext();
  await context.audioWorklet.addModule(URL.createObjectURL(new Blob([TAP], { type: "text/javascript" })));
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const protocols = key ? ["asrforge", "asrforge.key." + key.value] : [];
  socket = new WebSocket(scheme + location.host + "/v1/audio/stream", protocols);
  socket.binaryType = "arraybuffer";
  const sending = socket;
  say("Connecting…");
  socket.onopen = () => {
    sending.send(JSON.stringify({ model: model.value, sample_rate: context.sampleRate, encoding: "pcm_f32le" }));
  };
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    show(event);
    if (event.type === "ready" && context) {
      source = context.createMediaStreamSource(microphone);
      tap = new AudioWorkletNode(context, "asrforge-tap", { numberOfOutputs: 0 });   // a sink: pulled without output
      tap.port.onmessage = (block) => {
        if (sending.readyState === WebSocket.OPEN) sending.send(block.data.buffer);
      };
      source.connect(tap);
      stop.disabled = false;
    }
  };
  socket.onclose = (closed) => {
    release();
    if (closed.code !== 1000 && !status.classList.contains("af-error")) {
      say("The connection closed (" + closed.code + (closed.reason ? ": " + closed.reason : "") + ").", true);
    }
    socket = null;
  };
}

function end() {
  stop.disabled = true;
  if (tap) { tap.disconnect(); tap.port.onmessage = null; tap = null; }
  if (socket && socket.readyState === WebSocket.OPEN) {
    say("Finishing the last words…");
    socket.send(JSON.stringify({ type: "end" }));
  } else {
    release();
  }
}

start.addEventListener("click", begin);
stop.addEventListener("click", end);
