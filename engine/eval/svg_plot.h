#ifndef CLAA_ENGINE_EVAL_SVG_PLOT_H_
#define CLAA_ENGINE_EVAL_SVG_PLOT_H_

// A dependency-free SVG line chart, enough for `claa-cli eval`'s "Spearman with the oracle per
// layer, one line per method" figure: title, axis labels, grid, nice ticks, several named series
// (distinct color + marker each) and a legend. The output is a standalone SVG 1.1 document that
// browsers and rsvg-convert render; all text is XML-escaped.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace claa::eval {

struct PlotSeries {
  std::string name;       // Shown in the legend (any UTF-8 text).
  std::vector<double> x;  // Empty means 0, 1, 2, ... (e.g. layer index).
  std::vector<double> y;  // A non-finite x or y leaves a gap in the line (e.g. a skipped layer).
};

struct LineChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<PlotSeries> series;  // Colors and markers are assigned in this order.
  // Fixed y range; an unset side comes from the data, rounded out to a tick. Data outside a fixed
  // range is clipped at the frame.
  std::optional<double> y_min;
  std::optional<double> y_max;
  // X ticks only at whole numbers (layer indices); otherwise "nice" decimal ticks.
  bool integer_x_ticks = true;
  bool show_markers = true;
  // Size of the chart area (title, axes, plot) in px; the legend is added to the right of it.
  int width = 720;
  int height = 440;
};

// Renders `chart` as an SVG document.
// Errors (INVALID_ARGUMENT): width < 200 or height < 150, a series whose x is non-empty and not
// the length of its y, a non-finite fixed bound, or y_min >= y_max when both are set.
absl::StatusOr<std::string> RenderLineChartSvg(const LineChart& chart);

// Escapes text for XML character data and attribute values (& < > " '); control characters that
// XML 1.0 forbids are replaced by '?'.
std::string XmlEscape(std::string_view text);

}  // namespace claa::eval

#endif  // CLAA_ENGINE_EVAL_SVG_PLOT_H_
