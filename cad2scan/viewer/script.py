"""The viewer's inline JavaScript and CSS (kept here so the package needs no data files).

The script reads the JSON of ``<script id="c2s-data">`` (see ``cad2scan.viewer.data``),
draws the points with WebGL, or with a 2D canvas and a depth buffer when WebGL is
unavailable (or the URL ends in ``#renderer=2d``), and writes ``rendered N points
(webgl|2d)`` or ``error: ...`` into ``<div id="status">``. It makes no network request.
URL fragment options (for tests and links): ``renderer=2d``, ``mode=<mode>``,
``class=<class name>``, ``scene=<index>``.
"""

VIEWER_CSS = """
html, body { margin: 0; height: 100%; overflow: hidden; background: #18181c; color: #e8e8e8;
  font: 13px/1.35 system-ui, sans-serif; }
#stage, #stage canvas { position: absolute; inset: 0; width: 100%; height: 100%; display: block; }
#panel { position: absolute; top: 8px; left: 8px; max-width: 270px; max-height: calc(100% - 16px);
  overflow: auto; background: rgba(24, 24, 28, 0.82); padding: 8px 10px; border-radius: 6px; }
#panel h1 { font-size: 14px; margin: 0 0 6px 0; word-break: break-all; }
#panel label { display: block; margin: 4px 0; }
#panel select { max-width: 100%; }
#legend { margin-top: 6px; }
.entry { display: flex; align-items: center; gap: 6px; margin: 1px 0; }
.swatch { width: 12px; height: 12px; border-radius: 2px; flex: none; }
.ramp { height: 10px; border-radius: 2px; margin: 3px 0; }
#info, #help { color: #a8a8a8; font-size: 11px; margin-top: 6px; }
#status.error { color: #ff6b6b; font-weight: bold; }
"""

VIEWER_JS = r"""
(function () {
  "use strict";
  var statusEl = document.getElementById("status");
  var failed = false;
  function setStatus(text, isError) {
    statusEl.textContent = text;
    statusEl.className = isError ? "error" : "ok";
  }
  function fail(message) {
    failed = true;
    setStatus("error: " + message, true);
  }
  window.onerror = function (message, source, line) {
    fail(String(message) + (line ? " (line " + line + ")" : ""));
    return false;
  };
  window.addEventListener("unhandledrejection", function (event) { fail(String(event.reason)); });

  var MODE_TITLES = {
    prediction: "prediction", ground_truth: "ground truth", probability: "probability of a class",
    model: "source CAD model", synthetic: "scene vs synthetic", rgb: "scan colour", height: "height"
  };
  var MODE_LAYER = {
    prediction: "prediction", ground_truth: "ground_truth", probability: "probability",
    model: "model", synthetic: "synthetic", rgb: "rgb", height: null
  };
  var NO_VALUE = 255;
  var RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

  function decodeBase64(text) {
    var binary = atob(text);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes;
  }

  function rampColor(t, out, offset) {
    t = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
    var k = Math.min(RAMP.length - 2, Math.floor(t));
    var f = t - k;
    for (var c = 0; c < 3; c++) { out[offset + c] = Math.round(RAMP[k][c] + f * (RAMP[k + 1][c] - RAMP[k][c])); }
  }

  function parseHash() {
    var options = {};
    var hash = window.location.hash.replace(/^#/, "");
    if (!hash) { return options; }
    hash.split("&").forEach(function (part) {
      var eq = part.indexOf("=");
      if (eq > 0) { options[decodeURIComponent(part.slice(0, eq))] = decodeURIComponent(part.slice(eq + 1)); }
    });
    return options;
  }

  function decodeScene(packed, numClasses) {
    var n = packed.count;
    var quantised = new Uint16Array(decodeBase64(packed.coord).buffer, 0, 3 * n);
    var pos = new Float32Array(3 * n);
    var centre = [0, 0, 0];
    var low = [0, 0, 0];
    for (var k = 0; k < 3; k++) {
      centre[k] = packed.origin[k] + 0.5 * 65535 * packed.step[k];
      low[k] = packed.origin[k];
    }
    var radius = 0;
    for (k = 0; k < 3; k++) { radius += Math.pow(0.5 * 65535 * packed.step[k], 2); }
    for (var i = 0; i < 3 * n; i++) {
      k = i % 3;
      pos[i] = packed.origin[k] + quantised[i] * packed.step[k] - centre[k];
    }
    var layers = {};
    Object.keys(packed.layers).forEach(function (name) { layers[name] = decodeBase64(packed.layers[name]); });
    if (layers.probability && layers.probability.length !== n * numClasses) {
      throw new Error("scene " + packed.name + ": probability layer has the wrong size");
    }
    return { name: packed.name, count: n, total: packed.total, pos: pos, layers: layers,
             models: packed.models || [], radius: Math.max(Math.sqrt(radius), 0.5), zLow: low[2] - centre[2],
             zHigh: packed.origin[2] + 65535 * packed.step[2] - centre[2] };
  }

  function availableModes(scene) {
    return Object.keys(MODE_TITLES).filter(function (mode) {
      return MODE_LAYER[mode] === null || scene.layers[MODE_LAYER[mode]] !== undefined;
    });
  }

  // ---------------------------------------------------------------- colours
  function fillColors(scene, mode, classIndex, data, out) {
    var n = scene.count, i, v, c;
    var classColors = data.classes.map(function (entry) { return entry.color; });
    var layer = scene.layers[MODE_LAYER[mode]];
    if (mode === "prediction" || mode === "ground_truth") {
      for (i = 0; i < n; i++) {
        v = layer[i];
        c = v === NO_VALUE ? data.unlabelled_color : classColors[v];
        out[3 * i] = c[0]; out[3 * i + 1] = c[1]; out[3 * i + 2] = c[2];
      }
    } else if (mode === "probability") {
      var numClasses = data.classes.length;
      for (i = 0; i < n; i++) { rampColor(layer[i * numClasses + classIndex] / 255, out, 3 * i); }
    } else if (mode === "model") {
      var palette = data.model_colors;
      for (i = 0; i < n; i++) {
        v = layer[i];
        c = v === NO_VALUE ? data.scene_color : palette[v % palette.length];
        out[3 * i] = c[0]; out[3 * i + 1] = c[1]; out[3 * i + 2] = c[2];
      }
    } else if (mode === "synthetic") {
      for (i = 0; i < n; i++) {
        c = layer[i] ? data.synthetic_color : data.scene_color;
        out[3 * i] = c[0]; out[3 * i + 1] = c[1]; out[3 * i + 2] = c[2];
      }
    } else if (mode === "rgb") {
      out.set(layer.subarray(0, 3 * n));
    } else {
      var span = Math.max(scene.zHigh - scene.zLow, 1e-6);
      for (i = 0; i < n; i++) { rampColor((scene.pos[3 * i + 2] - scene.zLow) / span, out, 3 * i); }
    }
  }

  // ----------------------------------------------------------------- camera
  function cameraMatrix(cam, aspect) {
    var cp = Math.cos(cam.pitch), sp = Math.sin(cam.pitch), cy = Math.cos(cam.yaw), sy = Math.sin(cam.yaw);
    var eye = [cam.target[0] + cam.dist * cp * cy, cam.target[1] + cam.dist * cp * sy, cam.target[2] + cam.dist * sp];
    var f = [cam.target[0] - eye[0], cam.target[1] - eye[1], cam.target[2] - eye[2]];
    var fl = Math.hypot(f[0], f[1], f[2]);
    f = [f[0] / fl, f[1] / fl, f[2] / fl];
    var s = [f[1], -f[0], 0];  // f x (0, 0, 1)
    var sl = Math.hypot(s[0], s[1]) || 1;
    s = [s[0] / sl, s[1] / sl, 0];
    var u = [s[1] * f[2] - s[2] * f[1], s[2] * f[0] - s[0] * f[2], s[0] * f[1] - s[1] * f[0]];
    var dot = function (a, b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; };
    var view = [s[0], u[0], -f[0], 0, s[1], u[1], -f[1], 0, s[2], u[2], -f[2], 0,
                -dot(s, eye), -dot(u, eye), dot(f, eye), 1];  // column-major
    var near = Math.max(cam.dist * 0.01, 1e-3), far = cam.dist + 4 * cam.radius;
    var focal = 1 / Math.tan(cam.fov / 2);
    var proj = [focal / aspect, 0, 0, 0, 0, focal, 0, 0, 0, 0, (far + near) / (near - far), -1,
                0, 0, 2 * far * near / (near - far), 0];
    var m = new Float32Array(16);
    for (var col = 0; col < 4; col++) {
      for (var row = 0; row < 4; row++) {
        var sum = 0;
        for (var k = 0; k < 4; k++) { sum += proj[k * 4 + row] * view[col * 4 + k]; }
        m[col * 4 + row] = sum;
      }
    }
    return { matrix: m, right: s, up: u };
  }

  // -------------------------------------------------------------- renderers
  function makeWebGL(canvas) {
    var gl = null;
    try {
      gl = canvas.getContext("webgl", { antialias: false, preserveDrawingBuffer: true });
    } catch (error) { gl = null; }
    if (!gl) { return null; }
    function shader(type, source) {
      var s = gl.createShader(type);
      gl.shaderSource(s, source);
      gl.compileShader(s);
      return gl.getShaderParameter(s, gl.COMPILE_STATUS) ? s : null;
    }
    var vs = shader(gl.VERTEX_SHADER,
      "attribute vec3 p; attribute vec3 c; uniform mat4 m; uniform float size; varying vec3 v;" +
      "void main() { gl_Position = m * vec4(p, 1.0); gl_PointSize = size; v = c; }");
    var fs = shader(gl.FRAGMENT_SHADER,
      "precision mediump float; varying vec3 v; void main() { gl_FragColor = vec4(v, 1.0); }");
    if (!vs || !fs) { return null; }
    var program = gl.createProgram();
    gl.attachShader(program, vs);
    gl.attachShader(program, fs);
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) { return null; }
    var posBuffer = gl.createBuffer(), colBuffer = gl.createBuffer();
    var locP = gl.getAttribLocation(program, "p"), locC = gl.getAttribLocation(program, "c");
    var locM = gl.getUniformLocation(program, "m"), locSize = gl.getUniformLocation(program, "size");
    var count = 0;
    return {
      kind: "webgl",
      setPositions: function (pos) {
        gl.bindBuffer(gl.ARRAY_BUFFER, posBuffer);
        gl.bufferData(gl.ARRAY_BUFFER, pos, gl.STATIC_DRAW);
        count = pos.length / 3;
      },
      setColors: function (cols) {
        gl.bindBuffer(gl.ARRAY_BUFFER, colBuffer);
        gl.bufferData(gl.ARRAY_BUFFER, cols, gl.DYNAMIC_DRAW);
      },
      draw: function (matrix, width, height, size, background) {
        gl.viewport(0, 0, width, height);
        gl.clearColor(background[0] / 255, background[1] / 255, background[2] / 255, 1);
        gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
        gl.enable(gl.DEPTH_TEST);
        gl.useProgram(program);
        gl.bindBuffer(gl.ARRAY_BUFFER, posBuffer);
        gl.enableVertexAttribArray(locP);
        gl.vertexAttribPointer(locP, 3, gl.FLOAT, false, 0, 0);
        gl.bindBuffer(gl.ARRAY_BUFFER, colBuffer);
        gl.enableVertexAttribArray(locC);
        gl.vertexAttribPointer(locC, 3, gl.UNSIGNED_BYTE, true, 0, 0);
        gl.uniformMatrix4fv(locM, false, matrix);
        gl.uniform1f(locSize, size);
        gl.drawArrays(gl.POINTS, 0, count);
        var error = gl.getError();
        if (error !== gl.NO_ERROR) { throw new Error("WebGL error " + error); }
      }
    };
  }

  function make2D(canvas) {
    var ctx = canvas.getContext("2d");
    if (!ctx) { throw new Error("neither WebGL nor a 2D canvas is available"); }
    var pos = null, cols = null, image = null, depth = null;
    return {
      kind: "2d",
      setPositions: function (p) { pos = p; },
      setColors: function (c) { cols = c; },
      draw: function (m, width, height, size, background) {
        if (!image || image.width !== width || image.height !== height) {
          image = ctx.createImageData(width, height);
          depth = new Float32Array(width * height);
        }
        var pixels = image.data, total = width * height, i, j;
        for (i = 0; i < total; i++) {
          j = 4 * i;
          pixels[j] = background[0]; pixels[j + 1] = background[1]; pixels[j + 2] = background[2]; pixels[j + 3] = 255;
        }
        depth.fill(Infinity);
        var n = pos.length / 3, half = Math.floor(size / 2), s = Math.max(1, Math.round(size));
        for (i = 0; i < n; i++) {
          var x = pos[3 * i], y = pos[3 * i + 1], z = pos[3 * i + 2];
          var w = m[3] * x + m[7] * y + m[11] * z + m[15];
          if (w <= 1e-6) { continue; }
          var nx = (m[0] * x + m[4] * y + m[8] * z + m[12]) / w;
          var ny = (m[1] * x + m[5] * y + m[9] * z + m[13]) / w;
          var nz = (m[2] * x + m[6] * y + m[10] * z + m[14]) / w;
          if (nx < -1 || nx > 1 || ny < -1 || ny > 1 || nz < -1 || nz > 1) { continue; }
          var px = Math.floor((nx + 1) * 0.5 * width) - half, py = Math.floor((1 - ny) * 0.5 * height) - half;
          for (var dy = 0; dy < s; dy++) {
            var row = py + dy;
            if (row < 0 || row >= height) { continue; }
            for (var dx = 0; dx < s; dx++) {
              var colx = px + dx;
              if (colx < 0 || colx >= width) { continue; }
              var k = row * width + colx;
              if (nz < depth[k]) {
                depth[k] = nz;
                pixels[4 * k] = cols[3 * i]; pixels[4 * k + 1] = cols[3 * i + 1]; pixels[4 * k + 2] = cols[3 * i + 2];
              }
            }
          }
        }
        ctx.putImageData(image, 0, 0);
      }
    };
  }

  // ----------------------------------------------------------------- legend
  function swatch(parent, color, text) {
    var entry = document.createElement("div");
    entry.className = "entry";
    var box = document.createElement("span");
    box.className = "swatch";
    box.style.background = "rgb(" + color.join(",") + ")";
    var label = document.createElement("span");
    label.textContent = text;
    entry.appendChild(box);
    entry.appendChild(label);
    parent.appendChild(entry);
  }

  function rampLegend(parent, low, high) {
    var bar = document.createElement("div");
    bar.className = "ramp";
    bar.style.background = "linear-gradient(to right, " + RAMP.map(function (c) {
      return "rgb(" + c.join(",") + ")";
    }).join(", ") + ")";
    parent.appendChild(bar);
    var ends = document.createElement("div");
    ends.className = "entry";
    ends.style.justifyContent = "space-between";
    var a = document.createElement("span"), b = document.createElement("span");
    a.textContent = low;
    b.textContent = high;
    ends.appendChild(a);
    ends.appendChild(b);
    parent.appendChild(ends);
  }

  function buildLegend(parent, data, scene, mode, classIndex) {
    while (parent.firstChild) { parent.removeChild(parent.firstChild); }
    if (mode === "prediction" || mode === "ground_truth") {
      data.classes.forEach(function (entry) { swatch(parent, entry.color, entry.name); });
      if (mode === "ground_truth") { swatch(parent, data.unlabelled_color, "unlabelled / ignored"); }
    } else if (mode === "probability") {
      var title = document.createElement("div");
      title.textContent = "P(" + data.classes[classIndex].name + ")";
      parent.appendChild(title);
      rampLegend(parent, "0", "1");
    } else if (mode === "model") {
      scene.models.forEach(function (model) {
        var name = model.label >= 0 ? data.classes[model.label].name : "?";
        swatch(parent, data.model_colors[model.id % data.model_colors.length], "model " + model.id + ": " + name);
      });
      swatch(parent, data.scene_color, "scan points");
    } else if (mode === "synthetic") {
      swatch(parent, data.synthetic_color, "synthetic (CAD models)");
      swatch(parent, data.scene_color, "scan points");
    } else if (mode === "height") {
      rampLegend(parent, "low", "high");
    }
  }

  // ------------------------------------------------------------------- main
  function main() {
    var data = JSON.parse(document.getElementById("c2s-data").textContent);
    var options = parseHash();
    var numClasses = data.classes.length;
    var scenes = data.scenes.map(function (packed) { return decodeScene(packed, numClasses); });
    if (!scenes.length) { throw new Error("the page holds no points"); }
    var modeSelect = document.getElementById("mode"), classSelect = document.getElementById("class");
    var sceneSelect = document.getElementById("scene"), sizeInput = document.getElementById("size");
    var legend = document.getElementById("legend"), info = document.getElementById("info");
    var stage = document.getElementById("stage");

    var canvas = document.createElement("canvas");
    stage.appendChild(canvas);
    var renderer = options.renderer === "2d" ? null : makeWebGL(canvas);
    if (!renderer) {
      stage.removeChild(canvas);
      canvas = document.createElement("canvas");
      stage.appendChild(canvas);
      renderer = make2D(canvas);
    }

    var state = { scene: 0, mode: data.initial.mode, classIndex: data.initial.class_index };
    if (options.scene !== undefined) { state.scene = Math.min(scenes.length - 1, Math.max(0, parseInt(options.scene, 10) || 0)); }
    if (options.mode !== undefined) { state.mode = options.mode; }
    if (options["class"] !== undefined) {
      var named = data.classes.map(function (c) { return c.name; }).indexOf(options["class"]);
      if (named < 0) { throw new Error("unknown class " + options["class"]); }
      state.classIndex = named;
    }
    var cam = null, colors = null;

    data.classes.forEach(function (entry, index) {
      var option = document.createElement("option");
      option.value = String(index);
      option.textContent = entry.name;
      classSelect.appendChild(option);
    });
    scenes.forEach(function (scene, index) {
      var option = document.createElement("option");
      option.value = String(index);
      option.textContent = scene.name;
      sceneSelect.appendChild(option);
    });
    sceneSelect.parentNode.style.display = scenes.length > 1 ? "" : "none";

    function resetCamera() {
      var radius = scenes[state.scene].radius;
      cam = { yaw: -2.3, pitch: 0.75, dist: 2.2 * radius, target: [0, 0, 0], fov: 0.9, radius: radius };
    }

    function selectScene(index) {
      state.scene = index;
      var scene = scenes[index];
      var modes = availableModes(scene);
      if (modes.indexOf(state.mode) < 0) { state.mode = modes[0]; }
      while (modeSelect.firstChild) { modeSelect.removeChild(modeSelect.firstChild); }
      modes.forEach(function (mode) {
        var option = document.createElement("option");
        option.value = mode;
        option.textContent = MODE_TITLES[mode];
        modeSelect.appendChild(option);
      });
      sceneSelect.value = String(index);
      colors = new Uint8Array(3 * scene.count);
      renderer.setPositions(scene.pos);
      resetCamera();
      var notes = (data.notes || []).slice();
      notes.unshift("showing " + scene.count + " of " + scene.total + " points");
      info.textContent = notes.join(" \u00b7 ");
      recolor();
    }

    function recolor() {
      var scene = scenes[state.scene];
      modeSelect.value = state.mode;
      classSelect.value = String(state.classIndex);
      classSelect.parentNode.style.opacity = state.mode === "probability" ? "1" : "0.5";
      fillColors(scene, state.mode, state.classIndex, data, colors);
      renderer.setColors(colors);
      buildLegend(legend, data, scene, state.mode, state.classIndex);
    }

    function render() {
      if (failed) { return; }
      var dpr = window.devicePixelRatio || 1;
      var width = Math.max(1, Math.round(stage.clientWidth * dpr)), height = Math.max(1, Math.round(stage.clientHeight * dpr));
      if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
      var camera = cameraMatrix(cam, width / height);
      renderer.draw(camera.matrix, width, height, Number(sizeInput.value) * dpr, data.background);
      var scene = scenes[state.scene];
      setStatus("rendered " + scene.count + " points (" + renderer.kind + ")", false);
    }

    var pending = false;
    function requestRender() {
      if (pending) { return; }
      pending = true;
      window.requestAnimationFrame(function () { pending = false; render(); });
    }

    modeSelect.addEventListener("change", function () { state.mode = modeSelect.value; recolor(); requestRender(); });
    classSelect.addEventListener("change", function () {
      state.classIndex = parseInt(classSelect.value, 10);
      if (scenes[state.scene].layers.probability) { state.mode = "probability"; }
      recolor();
      requestRender();
    });
    sceneSelect.addEventListener("change", function () { selectScene(parseInt(sceneSelect.value, 10)); requestRender(); });
    sizeInput.addEventListener("input", requestRender);
    window.addEventListener("resize", requestRender);

    var drag = null;
    canvas.addEventListener("contextmenu", function (event) { event.preventDefault(); });
    canvas.addEventListener("mousedown", function (event) {
      drag = { x: event.clientX, y: event.clientY, pan: event.button !== 0 || event.shiftKey };
    });
    window.addEventListener("mouseup", function () { drag = null; });
    window.addEventListener("mousemove", function (event) {
      if (!drag) { return; }
      var dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      drag.x = event.clientX;
      drag.y = event.clientY;
      if (drag.pan) {
        var camera = cameraMatrix(cam, 1), k = cam.dist * 0.0015;
        for (var a = 0; a < 3; a++) { cam.target[a] += k * (-dx * camera.right[a] + dy * camera.up[a]); }
      } else {
        cam.yaw -= dx * 0.008;
        cam.pitch = Math.min(1.55, Math.max(-1.55, cam.pitch + dy * 0.008));
      }
      requestRender();
    });
    canvas.addEventListener("wheel", function (event) {
      event.preventDefault();
      cam.dist = Math.min(50 * cam.radius, Math.max(0.02 * cam.radius, cam.dist * Math.exp(event.deltaY * 0.0012)));
      requestRender();
    }, { passive: false });
    canvas.addEventListener("dblclick", function () { resetCamera(); requestRender(); });

    selectScene(state.scene);
    if (availableModes(scenes[state.scene]).indexOf(options.mode || state.mode) < 0) {
      throw new Error("colour mode " + options.mode + " is not available for this scan");
    }
    render();
  }

  try {
    main();
  } catch (error) {
    fail(error && error.message ? error.message : String(error));
  }
})();
"""
