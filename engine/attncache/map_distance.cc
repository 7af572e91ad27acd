#include "engine/attncache/map_distance.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "engine/attncache/fp16.h"

namespace claa::attncache {

double MapsTotalVariation(const MapsView& a, const MapsView& b) {
  const int rows = std::min(a.shape.length, b.shape.length);
  const size_t values = MapsShape::Triangle(rows);
  std::vector<float> fa(values), fb(values);
  double total = 0.0;
  for (int l = 0; l < a.shape.layers; ++l) {
    for (int h = 0; h < a.shape.heads; ++h) {
      // The first `rows` rows of a packed triangle are its first Triangle(rows) values.
      HalfToFloat(a.data + a.shape.offset(l, h), values, fa.data());
      HalfToFloat(b.data + b.shape.offset(l, h), values, fb.data());
      double sum = 0.0;
      for (size_t i = 0; i < values; ++i) sum += std::abs(double(fa[i]) - fb[i]);
      total += 0.5 * sum;
    }
  }
  const double row_count = double(a.shape.layers) * a.shape.heads * rows;
  return row_count > 0 ? total / row_count : 0.0;
}

double MapsDistanceTarget(const MapsView& a, const MapsView& b, double length_penalty) {
  const int la = a.shape.length, lb = b.shape.length;
  return MapsTotalVariation(a, b) + length_penalty * std::abs(la - lb) / double(std::max(la, lb));
}

}  // namespace claa::attncache
