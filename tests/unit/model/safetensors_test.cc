#include "engine/model/safetensors.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/model/safetensors_test_util.h"

namespace claa {
namespace {

using ::claa::testing::F32Bytes;
using ::claa::testing::FakeTensor;
using ::claa::testing::MakeTensor;
using ::claa::testing::RawTensor;
using ::claa::testing::ScopedTempDir;
using ::claa::testing::SerializeOptions;
using ::claa::testing::SerializeSafetensors;
using ::claa::testing::U16Bytes;
using ::claa::testing::WriteBytes;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// Writes `bytes` to <tmp>/model.safetensors and opens it.
absl::StatusOr<std::unique_ptr<SafetensorsArchive>> OpenBytes(const ScopedTempDir& tmp,
                                                              const std::string& bytes) {
  const auto path = tmp.path() / "model.safetensors";
  WriteBytes(path, bytes);
  return SafetensorsArchive::OpenFile(path);
}

std::vector<float> Iota(int n, float start = 0.0f) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = start + i;
  return v;
}

// ---------------------------------------------------------------------------------------------
// Scalar conversions.

TEST(HalfToFloatTest, KnownValues) {
  EXPECT_EQ(HalfToFloat(0x3C00), 1.0f);
  EXPECT_EQ(HalfToFloat(0xC000), -2.0f);
  EXPECT_EQ(HalfToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(HalfToFloat(0x7BFF), 65504.0f);         // largest normal
  EXPECT_EQ(HalfToFloat(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(HalfToFloat(0x0000), 0.0f);
  EXPECT_TRUE(std::signbit(HalfToFloat(0x8000)));
  EXPECT_EQ(HalfToFloat(0x8000), 0.0f);
}

TEST(HalfToFloatTest, Subnormals) {
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));           // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x03FF), 1023.0f * std::ldexp(1.0f, -24));  // largest subnormal
  EXPECT_EQ(HalfToFloat(0x0200), std::ldexp(1.0f, -15));
  EXPECT_EQ(HalfToFloat(0x8001), -std::ldexp(1.0f, -24));
}

TEST(HalfToFloatTest, InfAndNan) {
  EXPECT_EQ(HalfToFloat(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(HalfToFloat(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7E00)));
  EXPECT_TRUE(std::isnan(HalfToFloat(0x7C01)));  // signalling-nan payload is kept a nan
  EXPECT_TRUE(std::isnan(HalfToFloat(0xFE00)));
}

TEST(HalfToFloatTest, ExhaustiveAgainstReferenceFormula) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const int exp = (h >> 10) & 0x1f;
    const int mant = h & 0x3ff;
    const float sign = (h & 0x8000) ? -1.0f : 1.0f;
    float ref;
    if (exp == 0) {
      ref = sign * std::ldexp(static_cast<float>(mant), -24);
    } else if (exp == 31) {
      ref = mant == 0 ? sign * std::numeric_limits<float>::infinity()
                      : std::numeric_limits<float>::quiet_NaN();
    } else {
      ref = sign * std::ldexp(1.0f + mant / 1024.0f, exp - 15);
    }
    const float got = HalfToFloat(static_cast<uint16_t>(h));
    if (std::isnan(ref)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << h;
    } else {
      ASSERT_EQ(got, ref) << std::hex << h;
      ASSERT_EQ(std::signbit(got), std::signbit(ref)) << std::hex << h;
    }
  }
}

TEST(BFloat16ToFloatTest, KnownValues) {
  EXPECT_EQ(BFloat16ToFloat(0x3F80), 1.0f);
  EXPECT_EQ(BFloat16ToFloat(0xC040), -3.0f);
  EXPECT_EQ(BFloat16ToFloat(0x4049), 3.140625f);
  EXPECT_EQ(BFloat16ToFloat(0x0001), std::ldexp(1.0f, -133));  // subnormal
  EXPECT_EQ(BFloat16ToFloat(0x7F80), std::numeric_limits<float>::infinity());
  EXPECT_EQ(BFloat16ToFloat(0xFF80), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(0x7FC0)));
  EXPECT_TRUE(std::signbit(BFloat16ToFloat(0x8000)));
}

// ---------------------------------------------------------------------------------------------
// Round trips through files.

TEST(SafetensorsTest, F32RoundTrip) {
  ScopedTempDir tmp;
  const std::vector<float> v = {1.5f, -2.25f, 0.0f, 1e-30f, 3.4e38f, -7.0f};
  auto a = OpenBytes(tmp, SerializeSafetensors({MakeTensor("w", "F32", {2, 3}, v)}));
  ASSERT_TRUE(a.ok()) << a.status();
  const TensorInfo* t = (*a)->Find("w");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::kF32);
  EXPECT_THAT(t->shape, ElementsAre(2, 3));
  EXPECT_EQ(t->nbytes, 24u);
  std::vector<float> out;
  ASSERT_TRUE((*a)->ReadF32("w", {2, 3}, &out).ok());
  EXPECT_EQ(out, v);
}

TEST(SafetensorsTest, F16RoundTripIncludingSpecials) {
  ScopedTempDir tmp;
  const std::vector<uint16_t> bits = {0x3C00, 0xC000, 0x0001, 0x03FF, 0x7C00, 0xFC00, 0x7E00, 0x8000};
  auto a = OpenBytes(tmp, SerializeSafetensors({RawTensor("h", "F16", {8}, U16Bytes(bits))}));
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<float> out;
  ASSERT_TRUE((*a)->ReadF32("h", {8}, &out).ok());
  ASSERT_EQ(out.size(), 8u);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(out[2], std::ldexp(1.0f, -24));
  EXPECT_EQ(out[3], 1023.0f * std::ldexp(1.0f, -24));
  EXPECT_EQ(out[4], std::numeric_limits<float>::infinity());
  EXPECT_EQ(out[5], -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(out[6]));
  EXPECT_TRUE(std::signbit(out[7]));
}

TEST(SafetensorsTest, BF16RoundTrip) {
  ScopedTempDir tmp;
  const std::vector<uint16_t> bits = {0x3F80, 0xC040, 0x4049, 0x7F80};
  auto a = OpenBytes(tmp, SerializeSafetensors({RawTensor("b", "BF16", {2, 2}, U16Bytes(bits))}));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->Find("b")->dtype, DType::kBF16);
  std::vector<float> out;
  ASSERT_TRUE((*a)->ReadF32("b", {2, 2}, &out).ok());
  EXPECT_THAT(out, ElementsAre(1.0f, -3.0f, 3.140625f, std::numeric_limits<float>::infinity()));
}

TEST(SafetensorsTest, UnalignedDataIsReadCorrectly) {
  ScopedTempDir tmp;
  SerializeOptions opt;
  opt.pad_header = false;
  opt.extra_header_spaces = 3;  // Data starts at an odd address relative to the mapping.
  const std::vector<float> v = Iota(12, 0.5f);
  auto a = OpenBytes(tmp, SerializeSafetensors({RawTensor("x", "BF16", {1}, U16Bytes({0x3F80})),
                                                MakeTensor("w", "F32", {3, 4}, v)},
                                               opt));
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<float> out;
  ASSERT_TRUE((*a)->ReadF32("w", {3, 4}, &out).ok());
  EXPECT_EQ(out, v);
  ASSERT_TRUE((*a)->ReadF32Cols("w", {3, 4}, 1, 3, &out).ok());
  EXPECT_THAT(out, ElementsAre(1.5f, 2.5f, 5.5f, 6.5f, 9.5f, 10.5f));
}

TEST(SafetensorsTest, NamesFindAndMetadata) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, SerializeSafetensors({MakeTensor("b", "F32", {1}, {1.0f}),
                                                MakeTensor("a", "F32", {1}, {2.0f})}));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT((*a)->Names(), ElementsAre("a", "b"));  // __metadata__ is not a tensor
  EXPECT_EQ((*a)->Find("__metadata__"), nullptr);
  EXPECT_EQ((*a)->Find("c"), nullptr);
  EXPECT_NE((*a)->Find("a")->file.find("model.safetensors"), std::string::npos);
}

TEST(SafetensorsTest, ZeroSizedTensor) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, SerializeSafetensors({MakeTensor("e", "F32", {0, 4}, {}),
                                                MakeTensor("w", "F32", {2}, {1.0f, 2.0f})}));
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<float> out = {9.0f};
  ASSERT_TRUE((*a)->ReadF32("e", {0, 4}, &out).ok());
  EXPECT_TRUE(out.empty());
}

// ---------------------------------------------------------------------------------------------
// Slices for tensor parallelism.

TEST(SafetensorsTest, RowSlices2D) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, SerializeSafetensors({MakeTensor("w", "F16", {4, 3},
                                                           Iota(12))}));  // ints exact in F16
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<float> out;
  ASSERT_TRUE((*a)->ReadF32Rows("w", {4, 3}, 1, 3, &out).ok());
  EXPECT_THAT(out, ElementsAre(3, 4, 5, 6, 7, 8));
  ASSERT_TRUE((*a)->ReadF32Rows("w", {4, 3}, 4, 4, &out).ok());
  EXPECT_TRUE(out.empty());
}

TEST(SafetensorsTest, RowSlices1D) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, SerializeSafetensors({MakeTensor("b", "BF16", {6}, Iota(6))}));
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<float> out;
  ASSERT_TRUE((*a)->ReadF32Rows("b", {6}, 2, 5, &out).ok());
  EXPECT_THAT(out, ElementsAre(2, 3, 4));
}

TEST(SafetensorsTest, ColumnSlices) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, SerializeSafetensors({MakeTensor("w", "F32", {3, 4}, Iota(12))}));
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<float> out;
  ASSERT_TRUE((*a)->ReadF32Cols("w", {3, 4}, 2, 4, &out).ok());
  EXPECT_THAT(out, ElementsAre(2, 3, 6, 7, 10, 11));
  ASSERT_TRUE((*a)->ReadF32Cols("w", {3, 4}, 0, 1, &out).ok());
  EXPECT_THAT(out, ElementsAre(0, 4, 8));
}

TEST(SafetensorsTest, SliceRangeErrors) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, SerializeSafetensors({MakeTensor("w", "F32", {3, 4}, Iota(12)),
                                                MakeTensor("b", "F32", {4}, Iota(4))}));
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<float> out;
  EXPECT_EQ((*a)->ReadF32Rows("w", {3, 4}, 2, 4, &out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*a)->ReadF32Rows("w", {3, 4}, -1, 1, &out).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*a)->ReadF32Rows("w", {3, 4}, 2, 1, &out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*a)->ReadF32Cols("w", {3, 4}, 3, 5, &out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*a)->ReadF32Cols("b", {4}, 0, 2, &out).code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Malformed files: one test per defect.

TEST(SafetensorsErrorTest, MissingFile) {
  ScopedTempDir tmp;
  auto a = SafetensorsArchive::OpenFile(tmp.path() / "nope.safetensors");
  EXPECT_EQ(a.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(a.status()), HasSubstr("nope.safetensors"));
}

TEST(SafetensorsErrorTest, MissingDirectory) {
  ScopedTempDir tmp;
  auto a = SafetensorsArchive::OpenDir(tmp.path() / "no_such_model");
  EXPECT_EQ(a.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(a.status()), HasSubstr("no_such_model"));
}

TEST(SafetensorsErrorTest, DirectoryWithoutWeights) {
  ScopedTempDir tmp;
  auto a = SafetensorsArchive::OpenDir(tmp.path());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(a.status()), HasSubstr("model.safetensors"));
}

TEST(SafetensorsErrorTest, ShorterThanLengthPrefix) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, std::string("\x10\x00\x00", 3));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("truncated"));
}

TEST(SafetensorsErrorTest, EmptyFile) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, "");
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("truncated"));
}

TEST(SafetensorsErrorTest, HeaderLengthBeyondFile) {
  ScopedTempDir tmp;
  std::string bytes = SerializeSafetensors({MakeTensor("w", "F32", {2}, {1, 2})});
  SerializeOptions opt;
  opt.header_len = bytes.size();  // Claims more header than the file holds.
  auto a = OpenBytes(tmp, SerializeSafetensors({MakeTensor("w", "F32", {2}, {1, 2})}, opt));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("header length"));
}

TEST(SafetensorsErrorTest, AbsurdHeaderLength) {
  ScopedTempDir tmp;
  SerializeOptions opt;
  opt.header_len = 0xFFFFFFFFFFFFull;
  auto a = OpenBytes(tmp, SerializeSafetensors({MakeTensor("w", "F32", {2}, {1, 2})}, opt));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("absurd"));
}

TEST(SafetensorsErrorTest, HeaderNotJson) {
  ScopedTempDir tmp;
  std::string body = "{\"w\": {\"dtype\": \"F32\",";  // cut off mid-object
  std::string bytes(8, '\0');
  uint64_t n = body.size();
  std::memcpy(bytes.data(), &n, 8);
  auto a = OpenBytes(tmp, bytes + body);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("JSON"));
}

TEST(SafetensorsErrorTest, TruncatedData) {
  ScopedTempDir tmp;
  std::string bytes = SerializeSafetensors({MakeTensor("a", "F32", {4}, Iota(4)),
                                            MakeTensor("b", "F32", {4}, Iota(4))});
  bytes.resize(bytes.size() - 5);  // Lose most of the last tensor.
  auto a = OpenBytes(tmp, bytes);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("'b'"));
  EXPECT_THAT(Msg(a.status()), HasSubstr("out of range"));
}

TEST(SafetensorsErrorTest, OffsetsOutOfRange) {
  ScopedTempDir tmp;
  FakeTensor t = MakeTensor("w", "F32", {2}, {1, 2});
  t.offsets = {100, 108};
  auto a = OpenBytes(tmp, SerializeSafetensors({t}));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("'w'"));
  EXPECT_THAT(Msg(a.status()), HasSubstr("out of range"));
}

TEST(SafetensorsErrorTest, OffsetsEndBeforeBegin) {
  ScopedTempDir tmp;
  FakeTensor t = MakeTensor("w", "F32", {2}, {1, 2});
  t.offsets = {8, 0};
  auto a = OpenBytes(tmp, SerializeSafetensors({t}));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("end 0 < begin 8"));
}

TEST(SafetensorsErrorTest, NegativeOffset) {
  ScopedTempDir tmp;
  FakeTensor t = MakeTensor("w", "F32", {2}, {1, 2});
  t.offsets = {-8, 0};
  auto a = OpenBytes(tmp, SerializeSafetensors({t}));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("data_offsets"));
}

TEST(SafetensorsErrorTest, ByteCountDisagreesWithShape) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, SerializeSafetensors({RawTensor("w", "F32", {3}, F32Bytes({1, 2}))}));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("'w'"));
  EXPECT_THAT(Msg(a.status()), HasSubstr("needs 12"));
}

TEST(SafetensorsErrorTest, UnknownDtypeI8) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, SerializeSafetensors({RawTensor("q", "I8", {4}, "\x01\x02\x03\x04")}));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("'I8'"));
  EXPECT_THAT(Msg(a.status()), HasSubstr("'q'"));
}

TEST(SafetensorsErrorTest, UnknownDtypeF64) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, SerializeSafetensors({RawTensor("d", "F64", {1}, std::string(8, '\0'))}));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("'F64'"));
  EXPECT_THAT(Msg(a.status()), HasSubstr("'d'"));
}

TEST(SafetensorsErrorTest, OverlappingTensors) {
  ScopedTempDir tmp;
  FakeTensor a1 = MakeTensor("a", "F32", {2}, {1, 2});
  FakeTensor b1 = MakeTensor("b", "F32", {2}, {3, 4});
  b1.offsets = {4, 12};
  auto a = OpenBytes(tmp, SerializeSafetensors({a1, b1}));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("overlap"));
}

TEST(SafetensorsErrorTest, BadShapeEntry) {
  ScopedTempDir tmp;
  nlohmann::json h = {{"w", {{"dtype", "F32"}, {"shape", {2, -1}}, {"data_offsets", {0, 8}}}}};
  std::string body = h.dump();
  std::string bytes(8, '\0');
  uint64_t n = body.size();
  std::memcpy(bytes.data(), &n, 8);
  auto a = OpenBytes(tmp, bytes + body + std::string(8, '\0'));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("shape"));
}

TEST(SafetensorsErrorTest, ShapeMismatchOnRead) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, SerializeSafetensors({MakeTensor("w", "F32", {2, 3}, Iota(6))}));
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<float> out;
  absl::Status s = (*a)->ReadF32("w", {3, 2}, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(s), HasSubstr("'w'"));
  EXPECT_THAT(Msg(s), HasSubstr("expected shape [3, 2]"));
  EXPECT_THAT(Msg(s), HasSubstr("got [2, 3]"));
}

TEST(SafetensorsErrorTest, MissingTensorOnRead) {
  ScopedTempDir tmp;
  auto a = OpenBytes(tmp, SerializeSafetensors({MakeTensor("w", "F32", {1}, {1})}));
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<float> out;
  absl::Status s = (*a)->ReadF32("missing.weight", {1}, &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(s), HasSubstr("missing.weight"));
}

// ---------------------------------------------------------------------------------------------
// Sharded directories.

void WriteIndex(const std::filesystem::path& dir, const nlohmann::json& weight_map) {
  WriteBytes(dir / "model.safetensors.index.json",
             nlohmann::json({{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}).dump());
}

TEST(SafetensorsShardTest, OpensShardsThroughIndex) {
  ScopedTempDir tmp;
  WriteBytes(tmp.path() / "s1.safetensors", SerializeSafetensors({MakeTensor("a", "F32", {2}, {1, 2})}));
  WriteBytes(tmp.path() / "s2.safetensors",
             SerializeSafetensors({MakeTensor("b", "BF16", {1}, {3}),
                                   MakeTensor("unlisted", "F32", {1}, {0})}));
  WriteIndex(tmp.path(), {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}});
  auto a = SafetensorsArchive::OpenDir(tmp.path());
  ASSERT_TRUE(a.ok()) << a.status();
  // The index is authoritative: tensors it does not list are not exposed.
  EXPECT_THAT((*a)->Names(), ElementsAre("a", "b"));
  EXPECT_NE((*a)->Find("b")->file.find("s2.safetensors"), std::string::npos);
  std::vector<float> out;
  ASSERT_TRUE((*a)->ReadF32("a", {2}, &out).ok());
  EXPECT_THAT(out, ElementsAre(1, 2));
  ASSERT_TRUE((*a)->ReadF32("b", {1}, &out).ok());
  EXPECT_THAT(out, ElementsAre(3));
}

TEST(SafetensorsShardTest, IndexPreferredOverSingleFile) {
  ScopedTempDir tmp;
  WriteBytes(tmp.path() / "model.safetensors", SerializeSafetensors({MakeTensor("x", "F32", {1}, {1})}));
  WriteBytes(tmp.path() / "s1.safetensors", SerializeSafetensors({MakeTensor("a", "F32", {1}, {1})}));
  WriteIndex(tmp.path(), {{"a", "s1.safetensors"}});
  auto a = SafetensorsArchive::OpenDir(tmp.path());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_THAT((*a)->Names(), ElementsAre("a"));
}

TEST(SafetensorsShardTest, MissingShardFile) {
  ScopedTempDir tmp;
  WriteBytes(tmp.path() / "s1.safetensors", SerializeSafetensors({MakeTensor("a", "F32", {1}, {1})}));
  WriteIndex(tmp.path(), {{"a", "s1.safetensors"}, {"b", "s2.safetensors"}});
  auto a = SafetensorsArchive::OpenDir(tmp.path());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(a.status()), HasSubstr("s2.safetensors"));
}

TEST(SafetensorsShardTest, TensorMissingFromItsShard) {
  ScopedTempDir tmp;
  WriteBytes(tmp.path() / "s1.safetensors", SerializeSafetensors({MakeTensor("a", "F32", {1}, {1})}));
  WriteIndex(tmp.path(), {{"a", "s1.safetensors"}, {"b", "s1.safetensors"}});
  auto a = SafetensorsArchive::OpenDir(tmp.path());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(a.status()), HasSubstr("'b'"));
  EXPECT_THAT(Msg(a.status()), HasSubstr("s1.safetensors"));
}

TEST(SafetensorsShardTest, CorruptShardIsReported) {
  ScopedTempDir tmp;
  WriteBytes(tmp.path() / "s1.safetensors", "garbage");
  WriteIndex(tmp.path(), {{"a", "s1.safetensors"}});
  auto a = SafetensorsArchive::OpenDir(tmp.path());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("s1.safetensors"));
}

TEST(SafetensorsShardTest, IndexNotJson) {
  ScopedTempDir tmp;
  WriteBytes(tmp.path() / "model.safetensors.index.json", "{\"weight_map\": ");
  auto a = SafetensorsArchive::OpenDir(tmp.path());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("model.safetensors.index.json"));
}

TEST(SafetensorsShardTest, IndexWithoutWeightMap) {
  ScopedTempDir tmp;
  WriteBytes(tmp.path() / "model.safetensors.index.json", "{\"metadata\": {}}");
  auto a = SafetensorsArchive::OpenDir(tmp.path());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("weight_map"));
}

TEST(SafetensorsShardTest, ShardPathEscapingDirectory) {
  ScopedTempDir tmp;
  WriteIndex(tmp.path(), {{"a", "../evil.safetensors"}});
  auto a = SafetensorsArchive::OpenDir(tmp.path());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(a.status()), HasSubstr("evil"));
}

}  // namespace
}  // namespace claa
