#ifndef CLAA_ENGINE_ATTNCACHE_MAP_DISTANCE_H_
#define CLAA_ENGINE_ATTNCACHE_MAP_DISTANCE_H_

// How different two inputs' attention maps are: the quantity AttnCache's lookup feature should
// predict (the Siamese MLP's training target, and the ground truth its evaluation uses).
#include "engine/attncache/attention_maps.h"

namespace claa::attncache {

// Mean total-variation distance of the rows both maps have: over layers, heads and query rows
// t < min(length_a, length_b), 0.5 * sum_s |A[t][s] - B[t][s]| (each row is a distribution over
// s <= t, so this is in [0, 1]). Requires equal layers and heads.
double MapsTotalVariation(const MapsView& a, const MapsView& b);

// The training target of the paper: total variation plus length_penalty * |La - Lb| / max(La, Lb)
// (maps of different lengths cannot stand in for each other row for row).
double MapsDistanceTarget(const MapsView& a, const MapsView& b, double length_penalty);

}  // namespace claa::attncache

#endif  // CLAA_ENGINE_ATTNCACHE_MAP_DISTANCE_H_
