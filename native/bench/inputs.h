// The harness's request: one set of inputs shaped from the model's metadata and filled with
// seeded random floats (other numeric types zero, strings "kiln"), used by every request.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "session.h"

namespace kiln::bench {

struct InputShapes {
  // The first dynamic dim of each input (the batch) when neither `dims` nor `shapes` says.
  int64_t batch = 1;
  // Values of named dynamic dims (--dim name=V); other unnamed dynamic dims are 1.
  std::map<std::string, int64_t> dims;
  // Whole shapes by input name (--shape name:d1,d2,...), as `kiln bench --shape` gives them.
  std::map<std::string, std::vector<int64_t>> shapes;
};

struct Inputs {
  std::vector<std::vector<char>> buffers;
  std::vector<std::vector<std::string>> strings;
  std::vector<Feed> feeds;  // view the buffers above: an Inputs is not copied once made
};

// kiln::Error(InvalidArgument) for a shape naming no input of the model or one of another rank.
void make_inputs(const Session& session, const InputShapes& shapes, Inputs& out);

// "name:1,3,224,224" (or "name:1x3x224x224") into its name and dims; kiln::Error(InvalidArgument).
std::pair<std::string, std::vector<int64_t>> parse_shape(const std::string& text);

}  // namespace kiln::bench
