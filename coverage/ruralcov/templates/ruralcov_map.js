/* ruralcov map pages: layers built from compact data, legend, search and full-screen control.
 *
 * Part of ruralcov (MIT). The data come from ruralcov.maps.data: coordinates are integers
 * (degrees x q), each ring's first vertex absolute and the others as differences, and
 * attributes are stored column by column (repeated texts as a dictionary). User data (names,
 * codes) only ever reach the page through textContent, never as HTML.
 */
(function () {
  "use strict";
  var R = (window.ruralcov = window.ruralcov || {});
  R.layers = {};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  R.el = el;

  function ring(flat, q) {
    var n = flat.length / 2, out = new Array(n), x = 0, y = 0;
    for (var i = 0; i < n; i++) {
      x += flat[2 * i];
      y += flat[2 * i + 1];
      out[i] = [y / q, x / q];
    }
    return out;
  }

  function value(col, i) {
    var v = col.v[i];
    if (col.d && v !== null) v = col.d[v];
    return v;
  }
  R.value = value;

  function title(data, i) {
    var parts = [];
    data.title.forEach(function (c) {
      var v = value(data.cols[c], i);
      if (v !== null && v !== "") parts.push(String(v));
    });
    return parts.length ? parts[0] + (parts.length > 1 ? " (" + parts.slice(1).join(", ") + ")" : "") : "";
  }

  function tooltip(data, i) {
    var box = el("div", "rc-tip");
    box.appendChild(el("strong", null, title(data, i)));
    if (data.classes) box.appendChild(el("div", null, data.classes[data.cls[i]].label));
    (data.tip || []).forEach(function (c) {
      var col = data.cols[c], v = value(col, i);
      box.appendChild(el("div", null, col.label + ": " + (v === null || v === "" ? "–" : v)));
    });
    return box;
  }
  R.tooltip = tooltip;

  function popup(data, i) {
    var box = el("div", "rc-popup");
    box.appendChild(el("h4", null, title(data, i)));
    if (data.classes) {
      var c = data.classes[data.cls[i]];
      var line = el("div", "rc-class");
      var sw = el("span", "rc-swatch");
      sw.style.background = c.color;
      line.appendChild(sw);
      line.appendChild(document.createTextNode(c.label));
      box.appendChild(line);
    }
    var t = el("table");
    data.cols.forEach(function (col) {
      if (col.hide) return;
      var v = value(col, i), tr = el("tr");
      tr.appendChild(el("th", null, col.label));
      tr.appendChild(el("td", null, v === null || v === "" ? "–" : v));
      t.appendChild(tr);
    });
    box.appendChild(t);
    if (data.link) {
      var href = value(data.cols[data.link.col], i);
      if (href) {
        var a = el("a", "rc-link", data.link.text);
        a.setAttribute("href", href);
        box.appendChild(a);
      }
    }
    return box;
  }
  R.popup = popup;

  function styleOf(c) {
    return {
      fillColor: c.color,
      color: c.stroke || "#ffffff",
      weight: c.weight === undefined ? 0.5 : c.weight,
      opacity: 1,
      fillOpacity: c.fill === undefined ? 0.85 : c.fill,
      radius: c.radius || 5,
    };
  }

  function build(data) {
    var group = L.featureGroup(), built = false, onAdd = group.onAdd;
    // Features are made when the layer is first shown, so a page opens without building
    // the layers it does not show.
    group.onAdd = function (map) {
      if (!built) {
        built = true;
        populate(group, data);
      }
      return onAdd.call(this, map);
    };
    group.ensure = function () {
      if (!built) {
        built = true;
        populate(group, data);
      }
      return group;
    };
    if (!data.inert) {
      group.bindTooltip(function (layer) { return tooltip(data, layer._rc); },
        { sticky: data.kind !== "labels" });
      group.bindPopup(function (layer) { return popup(data, layer._rc); }, { maxWidth: 380 });
    }
    group.rc = data;
    R.layers[data.id] = group;
    return group;
  }

  function populate(group, data) {
    var styles = data.classes ? data.classes.map(styleOf) : [styleOf({ color: "#444444" })];
    var q = data.q;
    for (var i = 0; i < data.geom.length; i++) {
      var g = data.geom[i], s = styles[data.cls ? data.cls[i] : 0], f;
      if (data.kind === "polygons") {
        f = L.polygon(g.map(function (poly) {
          return poly.map(function (r) { return ring(r, q); });
        }), s);
      } else if (data.kind === "lines") {
        f = L.polyline(g.map(function (r) { return ring(r, q); }),
          { color: s.fillColor, weight: s.weight, opacity: 0.9, interactive: !data.inert,
            dashArray: data.classes && data.classes[data.cls ? data.cls[i] : 0].dash });
      } else if (data.kind === "labels") {
        var icon = el("span", "rc-num", value(data.cols[data.label], i));
        f = L.marker([g[1] / q, g[0] / q], {
          icon: L.divIcon({ className: "rc-num-icon", html: icon, iconSize: null }),
        });
      } else {
        f = L.circleMarker([g[1] / q, g[0] / q], s);
      }
      f._rc = i;
      group.addLayer(f);
    }
  }
  R.layer = function (data) { return build(data); };

  /** Number of features of a layer that are on the map (browser tests count them). */
  R.drawn = function (id) {
    var g = R.layers[id];
    if (!g) return 0;
    var n = 0;
    g.eachLayer(function (l) { if (l._map) n++; });
    return n;
  };

  /** Open the popup of feature i of layer id, switching the layer on if needed. */
  R.show = function (map, id, i) {
    var g = R.layers[id];
    if (!map.hasLayer(g)) {
      if (g.rc.base) {
        Object.keys(R.layers).forEach(function (k) {
          var o = R.layers[k];
          if (o !== g && o.rc.base && map.hasLayer(o)) map.removeLayer(o);
        });
      }
      map.addLayer(g);
    }
    if (g.showAt) return g.showAt(map, i); // a layer drawn from tiles (ruralcov_tiles.js)
    var f = g.ensure().getLayers()[i];
    var b = f.getBounds ? f.getBounds() : L.latLngBounds([f.getLatLng()]);
    map.fitBounds(b, { maxZoom: 13 });
    f.fire("click", { latlng: b.getCenter() }, true);
  };

  /** A Leaflet control at position whose box (a div of class cls) fill() fills when the map
   * adds it; with isolate, clicks and scrolls on the box do not reach the map. */
  function control(map, position, cls, isolate, fill) {
    var ctl = L.control({ position: position });
    ctl.onAdd = function () {
      var box = el("div", cls + " leaflet-control");
      if (isolate) {
        L.DomEvent.disableClickPropagation(box);
        L.DomEvent.disableScrollPropagation(box);
      }
      fill(box);
      return box;
    };
    ctl.addTo(map);
    return ctl;
  }

  R.legend = function (map, info) {
    return control(map, "bottomright", "rc-legend", true, function (box) {
      var scale = el("div", "rc-scale");
      box.appendChild(el("h3", null, info.title));
      box.appendChild(scale);
      (info.notes || []).forEach(function (n) { box.appendChild(el("p", "rc-note", n)); });
      var prov = el("p", "rc-provenance");
      prov.appendChild(el("strong", null, "Data: "));
      prov.appendChild(document.createTextNode(info.provenance));
      box.appendChild(prov);
      function redraw() {
        scale.textContent = "";
        Object.keys(R.layers).forEach(function (k) {
          var g = R.layers[k], d = g.rc;
          if (!d.legend || !map.hasLayer(g)) return;
          scale.appendChild(el("h4", null, d.name));
          var ul = el("ul");
          d.classes.forEach(function (c) {
            var li = el("li"), sw = el("span", "rc-swatch");
            sw.style.background = c.color;
            if (c.stroke && c.stroke !== "#ffffff") sw.style.outline = "2px solid " + c.stroke;
            li.appendChild(sw);
            li.appendChild(document.createTextNode(c.label + (c.n === undefined ? "" : " (" + c.n.toLocaleString("en") + ")")));
            ul.appendChild(li);
          });
          scale.appendChild(ul);
        });
      }
      var pending = false;
      map.on("layeradd layerremove", function () {
        if (pending) return; // one redraw for the thousands of polygons a layer adds
        pending = true;
        setTimeout(function () { pending = false; redraw(); }, 0);
      });
      redraw();
    });
  };

  R.search = function (map, ids) {
    return control(map, "topleft", "rc-search leaflet-bar", true, function (box) {
      var input = el("input");
      input.type = "search";
      input.placeholder = "Search a village: name or code";
      input.setAttribute("aria-label", "Search a village by name or code");
      var list = el("ul", "rc-results");
      box.appendChild(input);
      box.appendChild(list);
      function run() {
        var text = input.value.trim().toLowerCase();
        list.textContent = "";
        if (!text) return;
        var found = 0;
        function add(label, id, i) {
          var li = el("li", null, label);
          li.tabIndex = 0;
          li.dataset.layer = id;
          li.dataset.i = String(i);
          list.appendChild(li);
          found++;
        }
        ids.forEach(function (id) {
          var g = R.layers[id];
          if (!g) return;
          if (g.find) { // a layer drawn from tiles searches its own index
            g.find(text, 12 - found, run).forEach(function (hit) { add(hit[0], id, hit[1]); });
            return;
          }
          var d = g.rc, names = d.cols[d.title[0]], codes = d.cols[d.title[1]];
          for (var i = 0; i < d.geom.length && found < 12; i++) {
            var name = String(value(names, i) || ""), code = String(value(codes, i) || "");
            if (code.toLowerCase().indexOf(text) === 0 || name.toLowerCase().indexOf(text) >= 0) {
              add(name + " (" + code + ")", id, i);
            }
          }
        });
        if (!found) list.appendChild(el("li", "rc-none", "no village matches"));
      }
      function pick(e) {
        var li = e.target.closest("li");
        if (!li || !li.dataset.layer) return;
        R.show(map, li.dataset.layer, Number(li.dataset.i));
      }
      L.DomEvent.on(input, "input", run);
      L.DomEvent.on(input, "keydown", function (e) {
        if (e.key === "Enter" && list.firstChild && list.firstChild.dataset.layer) {
          pick({ target: list.firstChild });
        }
      });
      L.DomEvent.on(list, "click", pick);
      L.DomEvent.on(list, "keydown", function (e) { if (e.key === "Enter") pick(e); });
    });
  };

  R.fullscreen = function (map) {
    return control(map, "topleft", "leaflet-bar", false, function (bar) {
      var a = el("a", "rc-fullscreen-button");
      var ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg");
      var path = document.createElementNS(ns, "path");
      svg.setAttribute("viewBox", "0 0 16 16");
      svg.setAttribute("width", "16");
      svg.setAttribute("height", "16");
      path.setAttribute("d", "M2 6V2h4M10 2h4v4M14 10v4h-4M6 14H2v-4");
      path.setAttribute("fill", "none");
      path.setAttribute("stroke", "#333");
      path.setAttribute("stroke-width", "2");
      svg.appendChild(path);
      a.appendChild(svg);
      a.href = "#";
      a.title = "Full screen";
      a.setAttribute("role", "button");
      a.setAttribute("aria-label", "Full screen");
      bar.appendChild(a);
      var box = map.getContainer();
      L.DomEvent.on(a, "click", function (e) {
        L.DomEvent.preventDefault(e);
        var on = !box.classList.contains("rc-fullscreen");
        box.classList.toggle("rc-fullscreen", on);
        try {
          if (on && box.requestFullscreen) box.requestFullscreen().catch(function () {});
          else if (!on && document.fullscreenElement) document.exitFullscreen();
        } catch (err) { /* the CSS class alone fills the window */ }
        setTimeout(function () { map.invalidateSize(); }, 50);
      });
      document.addEventListener("fullscreenchange", function () {
        if (!document.fullscreenElement) box.classList.remove("rc-fullscreen");
        map.invalidateSize();
      });
    });
  };
})();
