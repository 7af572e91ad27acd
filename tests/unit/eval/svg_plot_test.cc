#include "engine/eval/svg_plot.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace claa::eval {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

size_t Count(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

// Minimal well-formedness check: tags nest and close, attribute values are quoted, and every '&'
// starts one of the five predefined entities. (A ctest also parses a sample with Python's
// xml.dom.minidom.)
bool IsWellFormed(const std::string& xml, std::string* why) {
  std::vector<std::string> stack;
  size_t i = 0;
  if (xml.compare(0, 5, "<?xml") == 0) i = xml.find("?>") + 2;
  while (i < xml.size()) {
    if (xml[i] == '&') {
      bool ok = false;
      for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"}) {
        if (xml.compare(i, std::string(e).size(), e) == 0) ok = true;
      }
      if (!ok) return *why = "bare & at " + std::to_string(i), false;
      ++i;
      continue;
    }
    if (xml[i] != '<') {
      if (xml[i] == '>') return *why = "bare > at " + std::to_string(i), false;
      ++i;
      continue;
    }
    // Find the end of the tag, skipping quoted attribute values.
    size_t j = i + 1;
    char quote = 0;
    for (; j < xml.size(); ++j) {
      if (quote) {
        if (xml[j] == quote) quote = 0;
        else if (xml[j] == '<') return *why = "< in attribute at " + std::to_string(j), false;
      } else if (xml[j] == '"' || xml[j] == '\'') {
        quote = xml[j];
      } else if (xml[j] == '>') {
        break;
      }
    }
    if (j >= xml.size()) return *why = "unterminated tag", false;
    const std::string tag = xml.substr(i + 1, j - i - 1);
    if (tag.empty()) return *why = "empty tag", false;
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) return *why = "mismatched </" + name + ">", false;
      stack.pop_back();
    } else if (tag.back() != '/') {
      stack.push_back(tag.substr(0, tag.find_first_of(" \n\t")));
    }
    i = j + 1;
  }
  if (!stack.empty()) return *why = "unclosed <" + stack.back() + ">", false;
  return true;
}

LineChart SpearmanChart() {
  LineChart c;
  c.title = "Spearman correlation with the oracle";
  c.x_label = "layer";
  c.y_label = "Spearman rho";
  c.y_min = -0.2;
  c.y_max = 1.0;
  std::vector<double> a, b;
  for (int l = 0; l < 32; ++l) {
    a.push_back(0.5 + 0.4 * std::sin(l * 0.2));
    b.push_back(0.3 + 0.02 * l);
  }
  c.series.push_back({"CLAA (n=4)", {}, a});
  c.series.push_back({"FastKV", {}, b});
  c.series.push_back({"GemFilter <raw> & \"dot\"", {}, std::vector<double>(32, 0.1)});
  return c;
}

TEST(SvgPlotTest, ContainsEverySeriesNameEscaped) {
  absl::StatusOr<std::string> svg = RenderLineChartSvg(SpearmanChart());
  ASSERT_TRUE(svg.ok()) << svg.status();
  EXPECT_THAT(*svg, StartsWith("<?xml"));
  EXPECT_THAT(*svg, HasSubstr("xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_THAT(*svg, HasSubstr(">CLAA (n=4)</text>"));
  EXPECT_THAT(*svg, HasSubstr(">FastKV</text>"));
  EXPECT_THAT(*svg, HasSubstr(">GemFilter &lt;raw&gt; &amp; &quot;dot&quot;</text>"));
  EXPECT_THAT(*svg, Not(HasSubstr("<raw>")));
  EXPECT_THAT(*svg, HasSubstr(">Spearman correlation with the oracle</text>"));
  std::string why;
  EXPECT_TRUE(IsWellFormed(*svg, &why)) << why;
}

TEST(SvgPlotTest, DistinctColorsAndOneLinePerSeries) {
  const std::string svg = *RenderLineChartSvg(SpearmanChart());
  EXPECT_EQ(Count(svg, "<polyline"), 3u);
  EXPECT_THAT(svg, HasSubstr("stroke=\"#1f77b4\""));
  EXPECT_THAT(svg, HasSubstr("stroke=\"#ff7f0e\""));
  EXPECT_THAT(svg, HasSubstr("stroke=\"#2ca02c\""));
  // Markers: circles for the first series, squares for the second, triangles (paths) for the third.
  EXPECT_EQ(Count(svg, "<circle"), 32u + 1u);  // Plot + legend.
}

TEST(SvgPlotTest, FixedRangeTicksAndIntegerXTicks) {
  const std::string svg = *RenderLineChartSvg(SpearmanChart());
  for (const char* label : {">-0.2<", ">0.0<", ">0.4<", ">1.0<"}) {
    EXPECT_THAT(svg, HasSubstr(label)) << label;
  }
  EXPECT_THAT(svg, Not(HasSubstr(">1.2<")));
  EXPECT_THAT(svg, Not(HasSubstr(">-0.0<")));
  EXPECT_THAT(svg, HasSubstr(">0</text>"));
  EXPECT_THAT(svg, HasSubstr(">30</text>"));
  EXPECT_THAT(svg, Not(HasSubstr(">2.5</text>")));
  EXPECT_THAT(svg, HasSubstr("clip-path=\"url(#plot-area)\""));
}

TEST(SvgPlotTest, NonFiniteValuesSplitTheLine) {
  LineChart c;
  c.series.push_back({"gappy", {}, {0.1, 0.2, kNaN, 0.4, 0.5, 0.6}});
  const std::string svg = *RenderLineChartSvg(c);
  EXPECT_EQ(Count(svg, "<polyline"), 2u);
  EXPECT_EQ(Count(svg, "<circle"), 5u + 1u);
  std::string why;
  EXPECT_TRUE(IsWellFormed(svg, &why)) << why;
}

TEST(SvgPlotTest, PointsOutsideAFixedRangeGetNoMarker) {
  LineChart c;
  c.y_min = 0.0;
  c.y_max = 1.0;
  c.series.push_back({"s", {}, {0.5, 2.0, 1.0}});
  const std::string svg = *RenderLineChartSvg(c);
  EXPECT_EQ(Count(svg, "<circle"), 2u + 1u);  // 0.5 and 1.0 (on the bound), plus the legend.
  EXPECT_EQ(Count(svg, "<polyline"), 1u);    // The line still runs out through the frame.
}

TEST(SvgPlotTest, AutoRangeAndExplicitX) {
  LineChart c;
  c.integer_x_ticks = false;
  c.series.push_back({"s", {0.0, 0.5, 1.0}, {-3.0, 7.0, 2.0}});
  const std::string svg = *RenderLineChartSvg(c);
  EXPECT_THAT(svg, HasSubstr(">-4<"));  // Auto range rounds out to whole ticks.
  EXPECT_THAT(svg, HasSubstr(">8<"));
  EXPECT_THAT(svg, HasSubstr(">0.5</text>"));
}

TEST(SvgPlotTest, EmptyAndConstantChartsStillRender) {
  LineChart empty;
  empty.title = "nothing yet";
  absl::StatusOr<std::string> svg = RenderLineChartSvg(empty);
  ASSERT_TRUE(svg.ok()) << svg.status();
  std::string why;
  EXPECT_TRUE(IsWellFormed(*svg, &why)) << why;

  LineChart flat;
  flat.series.push_back({"flat", {}, {2.0, 2.0, 2.0}});
  svg = RenderLineChartSvg(flat);
  ASSERT_TRUE(svg.ok()) << svg.status();
  EXPECT_THAT(*svg, Not(HasSubstr("nan")));
  EXPECT_THAT(*svg, Not(HasSubstr("inf")));
}

TEST(SvgPlotTest, RejectsBadCharts) {
  LineChart c;
  c.width = 100;
  EXPECT_EQ(RenderLineChartSvg(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = LineChart();
  c.series.push_back({"s", {0, 1}, {1, 2, 3}});
  EXPECT_EQ(RenderLineChartSvg(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = LineChart();
  c.y_min = 1.0;
  c.y_max = 1.0;
  EXPECT_EQ(RenderLineChartSvg(c).status().code(), absl::StatusCode::kInvalidArgument);
  c = LineChart();
  c.y_max = kNaN;
  EXPECT_EQ(RenderLineChartSvg(c).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(XmlEscapeTest, EscapesSpecialAndControlCharacters) {
  EXPECT_EQ(XmlEscape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
  EXPECT_EQ(XmlEscape(std::string("x\x01y\tz", 5)), "x?y\tz");
  EXPECT_EQ(XmlEscape("ρ ≥ 0"), "ρ ≥ 0");  // UTF-8 passes through.
}

}  // namespace
}  // namespace claa::eval
