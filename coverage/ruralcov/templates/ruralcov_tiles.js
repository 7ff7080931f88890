/* ruralcov map pages drawn from vector tiles: the PMTiles archive read from chunk scripts,
 * themes painted by protomaps-leaflet, popups and tooltips from per-county evidence scripts,
 * search from a lazily loaded index.
 *
 * Part of ruralcov (MIT). Loaded after ruralcov_map.js, pmtiles.js and protomaps-leaflet.js.
 * Everything is read with <script> elements (never fetch), so the page works from file://
 * with the network off as well as from a web server. Tiles carry three integers per feature:
 * c (the county: evidence/<c>.js), i (the row in that county's evidence) and the class.
 */
(function () {
  "use strict";
  var R = window.ruralcov;
  var loaded = {}; // src -> promise of the value the script hands back

  /** Load a script once; resolves with what the script passes to R.deliver(src, value). */
  function load(src) {
    if (!loaded[src]) {
      loaded[src] = new Promise(function (resolve, reject) {
        var s = document.createElement("script");
        s.src = src;
        s.onerror = function () { reject(new Error("ruralcov: cannot read " + src)); };
        R.waiting[src] = resolve;
        document.head.appendChild(s);
      });
    }
    return loaded[src];
  }
  R.waiting = {};
  function deliver(src, value) {
    var done = R.waiting[src];
    delete R.waiting[src];
    if (done) done(value);
  }
  var dir = "tiles/";

  /** A layer whose data name another layer's geometry (geom_of, ruralcov.maps.vector's
   * shared_geometry) takes that geometry: polygons as they are, lines as their rings closed. */
  function closedRings(polygons) {
    var out = [];
    polygons.forEach(function (part) {
      part.forEach(function (r) {
        var sx = 0, sy = 0;
        for (var j = 2; j < r.length; j += 2) { sx += r[j]; sy += r[j + 1]; }
        out.push(r.concat([-sx, -sy]));
      });
    });
    return out;
  }
  var layer = R.layer;
  R.layer = function (d) {
    if (d.geom_of === undefined) return layer(d);
    var src = R.layers[d.geom_of].rc.geom, own = {};
    Object.keys(d).forEach(function (k) { if (k !== "geom_of") own[k] = d[k]; });
    own.geom = d.kind === "lines" ? src.map(closedRings) : src;
    return layer(own);
  };

  /** Called by tiles/<archive>.<k>.js: one chunk of the archive, in base64. */
  R.chunk = function (name, k, b64) {
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var j = 0; j < bin.length; j++) bytes[j] = bin.charCodeAt(j);
    deliver(dir + name + "." + k + ".js", bytes);
  };
  /** Called by tiles/evidence/<c>.js. */
  R.evidence = function (c, data) { deliver(dir + "evidence/" + c + ".js", data); };
  /** Called by tiles/search.js. */
  R.searchIndex = function (data) { deliver(dir + "search.js", data); };

  /** A PMTiles source reading byte ranges from the chunk scripts of the archive. */
  function ChunkSource(archive) {
    this.archive = archive;
  }
  ChunkSource.prototype.getKey = function () { return this.archive.name; };
  ChunkSource.prototype.getBytes = function (offset, length) {
    var a = this.archive, end = Math.min(offset + length, a.size);
    var first = Math.floor(offset / a.chunk), last = Math.floor((end - 1) / a.chunk), parts = [];
    for (var k = first; k <= last; k++) parts.push(load(dir + a.name + "." + k + ".js"));
    return Promise.all(parts).then(function (chunks) {
      var out = new Uint8Array(Math.max(end - offset, 0)), at = 0;
      chunks.forEach(function (bytes, n) {
        var base = (first + n) * a.chunk;
        var piece = bytes.subarray(Math.max(offset - base, 0), Math.min(end - base, bytes.length));
        out.set(piece, at);
        at += piece.length;
      });
      return { data: out.buffer };
    });
  };

  var archives = {};
  function archiveOf(spec) {
    var a = spec.archive;
    if (!archives[a.name]) archives[a.name] = new pmtiles.PMTiles(new ChunkSource(a));
    return archives[a.name];
  }

  /** The feature of a tiled layer under a point, or null (loads the tile when needed). */
  function pick(group, latlng) {
    var t = group.rc.tiles, map = group._map;
    if (!map) return Promise.resolve(null);
    var view = group.views.get("");
    var z = Math.min(Math.max(Math.ceil(map.getZoom()) - 1, 0), t.max_zoom);
    if (z < t.min_zoom) return Promise.resolve(null);
    var n = 1 << z, x = (latlng.lng + 180) / 360 * n;
    var s = Math.sin(latlng.lat * Math.PI / 180);
    var y = (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * n;
    var tile = { z: z, x: Math.floor(x), y: Math.floor(y) };
    // the reader cancels the reads of another zoom when the map zooms: read again then
    return view.tileCache.get(tile).catch(function () {
      return view.tileCache.get(tile);
    }).then(function () {
      var found = view.tileCache.queryFeatures(latlng.lng, latlng.lat, z, 0);
      for (var j = 0; j < found.length; j++) {
        if (found[j].layerName === t.source) return found[j].feature.props;
      }
      return null;
    });
  }

  /** The layer data of one county, as ruralcov_map.js's popups and tooltips read it. */
  function rows(group, c) {
    return load(dir + "evidence/" + c + ".js").then(function (ev) {
      var own = ev[group.rc.id], d = {};
      Object.keys(group.rc).forEach(function (k) { d[k] = group.rc[k]; });
      d.cols = own.cols;
      d.cls = own.cls;
      return d;
    });
  }

  /** Open the layer's one popup on a feature; a later call wins over an earlier one whose
   * evidence is still loading. */
  function openPopup(group, map, latlng, props) {
    var asked = (group.asked = (group.asked || 0) + 1);
    group.popup = group.popup || L.popup({ maxWidth: 380 });
    return rows(group, props.c).then(function (d) {
      if (asked !== group.asked) return;
      group.popup.setLatLng(latlng).setContent(R.popup(d, props.i)).openOn(map);
    });
  }

  /** Popups on click and tooltips on hover while the layer is on its map. */
  function interact(group) {
    var tip = L.tooltip({ sticky: true }), last = 0, map = null;
    function click(e) {
      var asked = (group.asked = (group.asked || 0) + 1);
      pick(group, e.latlng).then(function (props) {
        if (props && map && asked === group.asked) openPopup(group, map, e.latlng, props);
      });
    }
    function move(e) {
      var now = Date.now();
      if (now - last < 60) return;
      last = now;
      pick(group, e.latlng).then(function (props) {
        if (!map) return null;
        if (!props) { map.closeTooltip(tip); return null; }
        return rows(group, props.c).then(function (d) {
          if (!map) return;
          tip.setLatLng(e.latlng).setContent(R.tooltip(d, props.i));
          if (!map.hasLayer(tip)) tip.addTo(map);
        });
      });
    }
    group.on("add", function () {
      map = group._map;
      map.on("click", click);
      map.on("mousemove", move);
    });
    group.on("remove", function () {
      map.off("click", click);
      map.off("mousemove", move);
      map.closeTooltip(tip);
      map = null;
    });
  }

  function symbolizer(d) {
    var t = d.tiles, cls = d.classes;
    function style(f) { return cls[f.props[t.prop]] || {}; }
    return new protomapsL.PolygonSymbolizer({
      fill: function (z, f) { return style(f).color; },
      opacity: function (z, f) { var s = style(f); return s.fill === undefined ? 0.85 : s.fill; },
      stroke: function (z, f) { return style(f).stroke || "#ffffff"; },
      width: function (z, f) { var s = style(f); return s.weight === undefined ? 0.5 : s.weight; },
    });
  }

  /** A theme drawn from the tiles: a Leaflet layer that the layer control, the legend and
   * the search treat as the embedded layers of ruralcov_map.js. */
  R.tiled = function (d) {
    var group = protomapsL.leafletLayer({
      url: archiveOf(d.tiles),
      maxDataZoom: d.tiles.max_zoom,
      paintRules: [{ dataLayer: d.tiles.source, symbolizer: symbolizer(d) }],
      attribution: "",
    });
    group.rc = d;
    group.ensure = function () { return group; };
    interact(group);
    group.find = function (text, limit, again) {
      var idx = R.searchData;
      if (!idx) {
        load(dir + "search.js").then(function (data) { R.searchData = data; again(); });
        return [];
      }
      var hits = [];
      for (var j = 0; j < idx.code.length && hits.length < limit; j++) {
        var name = String(idx.name[j] || ""), code = String(idx.code[j] || "");
        if (code.toLowerCase().indexOf(text) === 0 || name.toLowerCase().indexOf(text) >= 0) {
          hits.push([name + " (" + code + ")", j]);
        }
      }
      return hits;
    };
    group.showAt = function (map, j) {
      var idx = R.searchData, latlng = L.latLng(idx.xy[2 * j + 1] / idx.q, idx.xy[2 * j] / idx.q);
      map.setView(latlng, Math.max(map.getZoom(), d.tiles.max_zoom + 1), { animate: false });
      return openPopup(group, map, latlng, { c: idx.c[j], i: idx.i[j] });
    };
    R.layers[d.id] = group;
    return group;
  };

  /** Features of a tiled layer in the tiles loaded for the current view (browser tests). */
  R.tiledFeatures = function (id) {
    var g = R.layers[id], n = 0;
    if (!g || !g._map) return 0;
    g.views.get("").tileCache.cache.forEach(function (entry) {
      var f = entry.data.get(g.rc.tiles.source);
      if (f) n += f.length;
    });
    return n;
  };
})();
