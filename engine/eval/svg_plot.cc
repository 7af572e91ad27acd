#include "engine/eval/svg_plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace claa::eval {
namespace {

// Tableau 10: distinguishable on white and familiar from matplotlib.
constexpr std::array<const char*, 10> kColors = {
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

// 7 markers against 10 colors: color+marker pairs stay unique for 70 series, and series stay
// distinguishable in grayscale prints.
enum class Marker { kCircle, kSquare, kTriangleUp, kDiamond, kTriangleDown, kCross, kPlus };
constexpr int kNumMarkers = 7;

constexpr double kMarkerRadius = 4.0;
constexpr double kFontSize = 12.0;
// Average advance of a sans-serif glyph at kFontSize; used only to size the legend.
constexpr double kCharWidth = 7.0;

struct Range {
  double lo;
  double hi;
};

struct Layout {
  double left, top, right, bottom;  // Plot area in px.
  Range x, y;                       // Data range mapped onto it.
  double X(double v) const { return left + (v - x.lo) / (x.hi - x.lo) * (right - left); }
  double Y(double v) const { return bottom - (v - y.lo) / (y.hi - y.lo) * (bottom - top); }
};

// 1, 2 or 5 times a power of ten, at least `raw`: ticks that read well.
double NiceStep(double raw) {
  if (!(raw > 0.0) || !std::isfinite(raw)) return 1.0;
  const double base = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / base;
  const double nice = f <= 1.0 + 1e-9 ? 1.0 : f <= 2.0 + 1e-9 ? 2.0 : f <= 5.0 + 1e-9 ? 5.0 : 10.0;
  return nice * base;
}

// Decimals needed to print multiples of a NiceStep exactly.
int StepDecimals(double step) {
  return std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
}

std::vector<double> Ticks(Range r, double step) {
  std::vector<double> ticks;
  const double eps = step * 1e-6;
  for (double k = std::ceil((r.lo - eps) / step); k * step <= r.hi + eps; k += 1.0) {
    const double v = k * step;
    ticks.push_back(std::fabs(v) < eps ? 0.0 : v);  // No "-0.0" labels.
  }
  return ticks;
}

std::string Num(double v) { return absl::StrFormat("%.2f", v); }

size_t Utf8Length(std::string_view s) {
  return static_cast<size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

// absl::string_view is not std::string_view in this Abseil build, hence the plain const char*.
void AppendText(std::string& svg, double x, double y, const char* anchor, double size,
                std::string_view text, const std::string& extra = "") {
  absl::StrAppend(&svg, "<text x=\"", Num(x), "\" y=\"", Num(y), "\" text-anchor=\"", anchor,
                  "\" font-size=\"", Num(size), "\"", extra, ">", XmlEscape(text), "</text>\n");
}

void AppendMarker(std::string& svg, Marker m, double cx, double cy, const char* color) {
  const double r = kMarkerRadius;
  // Filled shapes get a white rim so overlapping markers of different series stay readable.
  const std::string fill = absl::StrCat("fill=\"", color, "\" stroke=\"#ffffff\" stroke-width=\"0.8\"");
  const std::string line = absl::StrCat("fill=\"none\" stroke=\"", color, "\" stroke-width=\"2\"");
  switch (m) {
    case Marker::kCircle:
      absl::StrAppend(&svg, "<circle cx=\"", Num(cx), "\" cy=\"", Num(cy), "\" r=\"", Num(r),
                      "\" ", fill, "/>\n");
      return;
    case Marker::kSquare: {
      const double s = r * 0.9;
      absl::StrAppend(&svg, "<rect x=\"", Num(cx - s), "\" y=\"", Num(cy - s), "\" width=\"",
                      Num(2 * s), "\" height=\"", Num(2 * s), "\" ", fill, "/>\n");
      return;
    }
    case Marker::kTriangleUp:
    case Marker::kTriangleDown: {
      const double d = m == Marker::kTriangleUp ? 1.0 : -1.0;
      const double h = r * 1.15;
      absl::StrAppend(&svg, "<path d=\"M", Num(cx), " ", Num(cy - d * h), " L", Num(cx + h), " ",
                      Num(cy + d * h * 0.8), " L", Num(cx - h), " ", Num(cy + d * h * 0.8),
                      " Z\" ", fill, "/>\n");
      return;
    }
    case Marker::kDiamond: {
      const double h = r * 1.25;
      absl::StrAppend(&svg, "<path d=\"M", Num(cx), " ", Num(cy - h), " L", Num(cx + h), " ",
                      Num(cy), " L", Num(cx), " ", Num(cy + h), " L", Num(cx - h), " ", Num(cy),
                      " Z\" ", fill, "/>\n");
      return;
    }
    case Marker::kCross: {
      const double h = r * 0.9;
      absl::StrAppend(&svg, "<path d=\"M", Num(cx - h), " ", Num(cy - h), " L", Num(cx + h), " ",
                      Num(cy + h), " M", Num(cx - h), " ", Num(cy + h), " L", Num(cx + h), " ",
                      Num(cy - h), "\" ", line, "/>\n");
      return;
    }
    case Marker::kPlus: {
      const double h = r * 1.1;
      absl::StrAppend(&svg, "<path d=\"M", Num(cx - h), " ", Num(cy), " L", Num(cx + h), " ",
                      Num(cy), " M", Num(cx), " ", Num(cy - h), " L", Num(cx), " ", Num(cy + h),
                      "\" ", line, "/>\n");
      return;
    }
  }
}

double XAt(const PlotSeries& s, size_t i) {
  return s.x.empty() ? static_cast<double>(i) : s.x[i];
}

bool Finite(double x, double y) { return std::isfinite(x) && std::isfinite(y); }

absl::Status Validate(const LineChart& c) {
  if (c.width < 200 || c.height < 150) {
    return absl::InvalidArgumentError(
        absl::StrCat("chart must be at least 200x150 px, got ", c.width, "x", c.height));
  }
  for (const PlotSeries& s : c.series) {
    if (!s.x.empty() && s.x.size() != s.y.size()) {
      return absl::InvalidArgumentError(absl::StrCat("series '", s.name, "' has ", s.x.size(),
                                                     " x values but ", s.y.size(), " y values"));
    }
  }
  if ((c.y_min && !std::isfinite(*c.y_min)) || (c.y_max && !std::isfinite(*c.y_max))) {
    return absl::InvalidArgumentError("fixed y range must be finite");
  }
  if (c.y_min && c.y_max && *c.y_min >= *c.y_max) {
    return absl::InvalidArgumentError(
        absl::StrCat("y_min (", *c.y_min, ") must be below y_max (", *c.y_max, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n' && c != '\r') {
          out += '?';
        } else {
          out += c;
        }
    }
  }
  return out;
}

absl::StatusOr<std::string> RenderLineChartSvg(const LineChart& chart) {
  if (absl::Status s = Validate(chart); !s.ok()) return s;

  // Data extents over finite points.
  constexpr double kInf = std::numeric_limits<double>::infinity();
  Range data_x{kInf, -kInf}, data_y{kInf, -kInf};
  for (const PlotSeries& s : chart.series) {
    for (size_t i = 0; i < s.y.size(); ++i) {
      const double x = XAt(s, i), y = s.y[i];
      if (!Finite(x, y)) continue;
      data_x = {std::min(data_x.lo, x), std::max(data_x.hi, x)};
      data_y = {std::min(data_y.lo, y), std::max(data_y.hi, y)};
    }
  }
  const bool has_data = data_x.lo <= data_x.hi;
  if (!has_data) data_x = data_y = {0.0, 1.0};

  // Legend geometry decides the canvas width.
  size_t longest_name = 0;
  for (const PlotSeries& s : chart.series) longest_name = std::max(longest_name, Utf8Length(s.name));
  const double legend_row = 20.0;
  const double legend_w = chart.series.empty() ? 0.0 : 44.0 + longest_name * kCharWidth + 16.0;
  const double legend_h = chart.series.size() * legend_row + 12.0;

  const double canvas_w = chart.width + legend_w;
  Layout L;
  L.left = 72.0;
  L.top = chart.title.empty() ? 20.0 : 48.0;
  L.right = chart.width - 20.0;
  L.bottom = chart.height - (chart.x_label.empty() ? 36.0 : 56.0);
  const double canvas_h = std::max<double>(chart.height, L.top + legend_h + 10.0);

  // Y range and ticks: a fixed side is kept exactly, an auto side is rounded out to a tick.
  const int y_intervals = std::max(3, static_cast<int>((L.bottom - L.top) / 55.0));
  Range y{chart.y_min.value_or(data_y.lo), chart.y_max.value_or(data_y.hi)};
  if (y.hi <= y.lo) {  // Constant data, or data entirely beyond a single fixed side.
    const double pad = std::max(0.5, std::fabs(y.lo) * 0.1);
    if (chart.y_max) {
      y.lo = y.hi - 2 * pad;
    } else if (chart.y_min) {
      y.hi = y.lo + 2 * pad;
    } else {
      y = {y.lo - pad, y.hi + pad};
    }
  }
  const double y_step = NiceStep((y.hi - y.lo) / y_intervals);
  if (!chart.y_min) y.lo = std::floor(y.lo / y_step + 1e-9) * y_step;
  if (!chart.y_max) y.hi = std::ceil(y.hi / y_step - 1e-9) * y_step;
  L.y = y;

  // X range: a small margin so edge markers do not sit on the frame.
  Range x = data_x;
  if (x.hi <= x.lo) x = {x.lo - 1.0, x.hi + 1.0};
  const int x_intervals = std::max(2, static_cast<int>((L.right - L.left) / 50.0));
  double x_step = NiceStep((x.hi - x.lo) / x_intervals);
  if (chart.integer_x_ticks) x_step = std::max(1.0, std::round(x_step));
  const double x_margin = (x.hi - x.lo) * 0.03;
  L.x = {x.lo - x_margin, x.hi + x_margin};

  std::string svg;
  absl::StrAppend(&svg, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"",
                  Num(canvas_w), "\" height=\"", Num(canvas_h), "\" viewBox=\"0 0 ",
                  Num(canvas_w), " ", Num(canvas_h),
                  "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n");
  absl::StrAppend(&svg, "<rect x=\"0\" y=\"0\" width=\"", Num(canvas_w), "\" height=\"",
                  Num(canvas_h), "\" fill=\"#ffffff\"/>\n");
  // Lines are clipped at the frame, so data beyond a fixed range is cut there; markers are drawn
  // only for in-range points and unclipped, so a point on a fixed bound (rho = 1.0) stays whole.
  absl::StrAppend(&svg, "<defs><clipPath id=\"plot-area\"><rect x=\"", Num(L.left), "\" y=\"",
                  Num(L.top), "\" width=\"", Num(L.right - L.left), "\" height=\"",
                  Num(L.bottom - L.top), "\"/></clipPath></defs>\n");

  if (!chart.title.empty()) {
    AppendText(svg, (L.left + L.right) / 2, 28.0, "middle", 16.0, chart.title,
               std::string(" font-weight=\"bold\""));
  }

  // Grid and tick labels.
  absl::StrAppend(&svg, "<g stroke=\"#e0e0e0\" stroke-width=\"1\">\n");
  const std::vector<double> y_ticks = Ticks(L.y, y_step);
  const std::vector<double> x_ticks = Ticks(x, x_step);
  for (double t : y_ticks) {
    absl::StrAppend(&svg, "<line x1=\"", Num(L.left), "\" y1=\"", Num(L.Y(t)), "\" x2=\"",
                    Num(L.right), "\" y2=\"", Num(L.Y(t)), "\"/>\n");
  }
  for (double t : x_ticks) {
    absl::StrAppend(&svg, "<line x1=\"", Num(L.X(t)), "\" y1=\"", Num(L.top), "\" x2=\"",
                    Num(L.X(t)), "\" y2=\"", Num(L.bottom), "\"/>\n");
  }
  absl::StrAppend(&svg, "</g>\n");
  // Zero is the "no correlation" baseline of the Spearman plot: make it stand out.
  if (L.y.lo < 0.0 && L.y.hi > 0.0) {
    absl::StrAppend(&svg, "<line x1=\"", Num(L.left), "\" y1=\"", Num(L.Y(0)), "\" x2=\"",
                    Num(L.right), "\" y2=\"", Num(L.Y(0)),
                    "\" stroke=\"#9e9e9e\" stroke-width=\"1\"/>\n");
  }
  absl::StrAppend(&svg, "<g fill=\"#333333\">\n");
  const int y_dec = StepDecimals(y_step);
  for (double t : y_ticks) {
    AppendText(svg, L.left - 8.0, L.Y(t) + 4.0, "end", kFontSize, absl::StrFormat("%.*f", y_dec, t));
  }
  const int x_dec = chart.integer_x_ticks ? 0 : StepDecimals(x_step);
  for (double t : x_ticks) {
    AppendText(svg, L.X(t), L.bottom + 18.0, "middle", kFontSize, absl::StrFormat("%.*f", x_dec, t));
  }
  absl::StrAppend(&svg, "</g>\n");
  absl::StrAppend(&svg, "<rect x=\"", Num(L.left), "\" y=\"", Num(L.top), "\" width=\"",
                  Num(L.right - L.left), "\" height=\"", Num(L.bottom - L.top),
                  "\" fill=\"none\" stroke=\"#333333\" stroke-width=\"1\"/>\n");
  if (!chart.x_label.empty()) {
    AppendText(svg, (L.left + L.right) / 2, L.bottom + 42.0, "middle", 13.0, chart.x_label);
  }
  if (!chart.y_label.empty()) {
    const double cx = 22.0, cy = (L.top + L.bottom) / 2;
    AppendText(svg, cx, cy, "middle", 13.0, chart.y_label,
               absl::StrCat(" transform=\"rotate(-90 ", Num(cx), " ", Num(cy), ")\""));
  }

  // Series: all lines first (one polyline per run of finite points), then all markers on top, so
  // no line hides another series' markers.
  absl::StrAppend(&svg, "<g clip-path=\"url(#plot-area)\" fill=\"none\" stroke-width=\"2\" "
                  "stroke-linejoin=\"round\">\n");
  for (size_t si = 0; si < chart.series.size(); ++si) {
    const PlotSeries& s = chart.series[si];
    const char* color = kColors[si % kColors.size()];
    std::string points;
    size_t run = 0;
    auto flush = [&] {
      if (run >= 2) {
        absl::StrAppend(&svg, "<polyline points=\"", points, "\" stroke=\"", color, "\"/>\n");
      }
      points.clear();
      run = 0;
    };
    for (size_t i = 0; i < s.y.size(); ++i) {
      const double px = XAt(s, i), py = s.y[i];
      if (!Finite(px, py)) {
        flush();
        continue;
      }
      absl::StrAppend(&points, run ? " " : "", Num(L.X(px)), ",", Num(L.Y(py)));
      ++run;
    }
    flush();
  }
  absl::StrAppend(&svg, "</g>\n");
  if (chart.show_markers) {
    const double eps = (L.y.hi - L.y.lo) * 1e-9;
    for (size_t si = 0; si < chart.series.size(); ++si) {
      const PlotSeries& s = chart.series[si];
      const char* color = kColors[si % kColors.size()];
      const auto marker = static_cast<Marker>(si % kNumMarkers);
      absl::StrAppend(&svg, "<g>\n");
      for (size_t i = 0; i < s.y.size(); ++i) {
        const double px = XAt(s, i), py = s.y[i];
        if (!Finite(px, py) || py < L.y.lo - eps || py > L.y.hi + eps) continue;
        AppendMarker(svg, marker, L.X(px), L.Y(py), color);
      }
      absl::StrAppend(&svg, "</g>\n");
    }
  }

  // Legend: right of the chart area, top-aligned with the plot, inside a light frame.
  if (!chart.series.empty()) {
    const double lx = chart.width - 4.0, ly = L.top;
    absl::StrAppend(&svg, "<rect x=\"", Num(lx), "\" y=\"", Num(ly), "\" width=\"",
                    Num(legend_w - 12.0), "\" height=\"", Num(legend_h),
                    "\" fill=\"#ffffff\" stroke=\"#cccccc\" stroke-width=\"1\" rx=\"3\"/>\n");
    for (size_t si = 0; si < chart.series.size(); ++si) {
      const char* color = kColors[si % kColors.size()];
      const double cy = ly + 16.0 + si * legend_row;
      absl::StrAppend(&svg, "<line x1=\"", Num(lx + 8.0), "\" y1=\"", Num(cy), "\" x2=\"",
                      Num(lx + 34.0), "\" y2=\"", Num(cy), "\" stroke=\"", color,
                      "\" stroke-width=\"2\"/>\n");
      if (chart.show_markers) {
        AppendMarker(svg, static_cast<Marker>(si % kNumMarkers), lx + 21.0, cy, color);
      }
      AppendText(svg, lx + 42.0, cy + 4.0, "start", kFontSize, chart.series[si].name,
                 std::string(" fill=\"#222222\""));
    }
  }
  absl::StrAppend(&svg, "</svg>\n");
  return svg;
}

}  // namespace claa::eval
