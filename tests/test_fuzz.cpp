// Fuzz test of the whole check pipeline: broken specs must give clean user errors.
//
// Starting from a few valid specs, it generates truncations, random byte flips,
// insertions and deletions, and token-level shuffles (fixed-seed std::mt19937, so
// every run sees the same inputs) and feeds each through check_spec_text(). Every
// input must either be accepted or rejected with a UserError that has a hint; an
// InternalError, any other exception, or a sanitizer report is a bug, and the
// offending input is printed.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/diag.h"
#include "compiler/driver.h"
#include "compiler/frontend.h"
#include "compiler/lexer.h"

namespace {

// The example from DESIGN.md plus the `import std` it needs.
const char* kTwoMoons = R"(import std
# two moons, 2-D points
diffusion { steps = 1000  schedule = linear(beta_min = 1e-4, beta_max = 0.02) }

data x0: [2]                         # one sample; the batch axis is implicit

net eps_theta(x: [2], t: step) -> [2] {
  h = concat(x, sinusoidal(t, 64))
  h = silu(linear(h, 128))           # linear() owns a weight and a bias
  h = silu(linear(h, 128))
  return linear(h, 2)
}

loss {
  t   = uniform_step()               # one t per sample
  eps = randn()                      # shaped like x0
  xt  = sqrt(abar[t]) * x0 + sqrt(1 - abar[t]) * eps
  return mean(square(eps - eps_theta(xt, t)))
}

sampler ddpm(x, t, s) {              # one reverse step, t → s = t-1
  eps = eps_theta(x, t)
  return (x - beta[t] / sqrt(1 - abar[t]) * eps) / sqrt(alpha[t])
         + sqrt(beta_tilde[t]) * randn()
}

sampler ddim(x, t, s) {              # deterministic DDIM, any s < t
  eps = eps_theta(x, t)
  x0  = (x - sqrt(1 - abar[t]) * eps) / sqrt(abar[t])
  return sqrt(abar[s]) * x0 + sqrt(1 - abar[s]) * eps
}
)";

const char* kDense = R"(import std
diffusion {
  steps = 100
  schedule = quadratic(beta_min = 1e-4, beta_max = 2e-2)
}
data x0: [4]

fn dense(x, n, scale = 1) {
  w = param([dim(x, -1), n], bound = scale / sqrt(dim(x, -1)))
  return matmul(x, w)
}

net eps_theta(x: [4], t: step) -> [4] {
  e = sinusoidal(t, 16)
  h = silu(dense(concat(x, e), 32) + dense(e, 32, scale = 0.5))
  return dense(h, 4)
}

loss {
  t = uniform_step()
  eps = randn()
  return mean(square(eps - eps_theta(sqrt(abar[t]) * x0 + sqrt(1 - abar[t]) * eps, t)))
}

sampler ddpm(x, t, s) {
  return (x - beta[t] / sqrt(1 - abar[t]) * eps_theta(x, t)) / sqrt(alpha[t]) + sqrt(beta[t]) * randn()
}
)";

const char* kCompact = R"(import "std"
diffusion { steps = 50; schedule = cosine() }
data x0: [3]
fn mix(a, b, w = 0.5) { return w * a + (1 - w) * b }
net eps_theta(x: [3], t: step) -> [3] {
  h = concat(mix(x, -x, w = 0.25), sinusoidal(t, 8)); h = silu(linear(h, 16))
  return linear(h, 3)
}
loss { t = uniform_step() eps = randn() return mean(square(eps - eps_theta(sqrt(abar[t]) * x0 + sqrt(1 - abar[t]) * eps, t))) }
sampler ddim(x, t, s) {
  eps = eps_theta(x, t)
  return sqrt(abar[s]) * (x - sqrt(1 - abar[t]) * eps) / sqrt(abar[t]) + sqrt(1 - abar[s]) * eps
}
)";

std::string printable(const std::string& s) {
  std::ostringstream out;
  for (unsigned char c : s) {
    if (c == '\n' || (c >= 0x20 && c < 0x7f))
      out << c;
    else
      out << "\\x" << std::hex << (c >> 4) << (c & 15) << std::dec;
  }
  return out.str();
}

class Fuzzer {
 public:
  int runs = 0;
  int accepted = 0;
  int failures = 0;
  std::set<std::string> without_hint;  // first lines of user errors that lack a hint

  void check(const std::string& text) {
    ++runs;
    std::string problem;
    try {
      ddpmc::check_spec_text(label_, text);
      ++accepted;
      return;
    } catch (const ddpmc::UserError& e) {
      std::string msg = e.what();
      if (msg.find("error: ") == std::string::npos) problem = "a user error without 'error: ':\n" + msg;
      if (msg.find("\nhint: ") == std::string::npos) without_hint.insert(msg.substr(0, msg.find('\n')));
    } catch (const ddpmc::InternalError& e) {
      problem = std::string("internal error: ") + e.what();
    } catch (const std::exception& e) {
      problem = std::string("unexpected exception: ") + e.what();
    } catch (...) {
      problem = "unexpected non-standard exception";
    }
    if (problem.empty()) return;
    ++failures;
    if (failures <= 5) FAIL_CHECK(problem << "\n--- input ---\n" << printable(text) << "\n--- end ---");
  }

 private:
  std::string label_ =
      (std::filesystem::temp_directory_path() / "ddpmc_fuzz_no_such_dir" / "fuzz.ddpm").string();
};

// Byte mutations inside comments only make more valid specs, which are the slow
// ones to check; mutate comment-free copies of the seeds instead.
std::string strip_comments(const std::string& text) {
  std::string out;
  bool in_comment = false;
  for (char c : text) {
    if (c == '#') in_comment = true;
    if (c == '\n') {
      while (!out.empty() && out.back() == ' ') out.pop_back();
      in_comment = false;
    }
    if (!in_comment) out += c;
  }
  return out;
}

char random_byte(std::mt19937& rng) {
  static const std::string interesting = "()[]{},:=+-*/->;#\"\n .0123456789eE_xtabcdefghijklmnopqrstuvwyz";
  switch (rng() % 4) {
    case 0: return (char)(rng() % 256);
    default: return interesting[rng() % interesting.size()];
  }
}

std::string byte_mutant(const std::string& seed, std::mt19937& rng) {
  std::string s = seed;
  int edits = 1 + rng() % 4;
  for (int i = 0; i < edits; ++i) {
    size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 3) {
      case 0:
        if (pos < s.size()) s[pos] = random_byte(rng);
        break;
      case 1: s.insert(s.begin() + pos, random_byte(rng)); break;
      case 2:
        if (pos < s.size()) s.erase(pos, 1 + rng() % 3);
        break;
    }
  }
  return s;
}

std::vector<std::string> token_texts(const std::string& text) {
  ddpmc::Sources src;
  std::vector<std::string> out;
  for (const ddpmc::Token& t : ddpmc::lex(src.add("seed.ddpm", text)))
    if (t.kind != ddpmc::Tok::Eof) out.emplace_back(t.text);
  return out;
}

std::string token_mutant(const std::vector<std::string>& seed, std::mt19937& rng) {
  std::vector<std::string> t = seed;
  int edits = 1 + rng() % 3;
  for (int i = 0; i < edits && !t.empty(); ++i) {
    size_t a = rng() % t.size(), b = rng() % t.size();
    switch (rng() % 4) {
      case 0: std::swap(t[a], t[b]); break;
      case 1: t.erase(t.begin() + a); break;
      case 2: t.insert(t.begin() + a, t[b]); break;
      case 3: t[a] = seed[rng() % seed.size()]; break;
    }
  }
  std::string out;
  for (const std::string& s : t) out += s + (rng() % 8 == 0 ? "\n" : " ");
  return out;
}

}  // namespace

TEST_CASE("fuzz: mutated and truncated specs give user errors, never crashes or internal errors") {
  const std::vector<std::string> seeds = {kTwoMoons, kDense, kCompact};
  std::mt19937 rng(20240611);
  Fuzzer fz;
  auto start = std::chrono::steady_clock::now();

  // The seeds are valid specs; if one stops compiling, update it, or the fuzzing
  // no longer reaches the later stages.
  for (const std::string& seed : seeds) {
    INFO("seed:\n" << seed);
    CHECK_NOTHROW(ddpmc::check_spec_text("seed.ddpm", seed));
    fz.check(seed);
  }

  // Truncation at every byte.
  for (const std::string& seed : seeds)
    for (size_t k = 0; k < seed.size(); ++k) fz.check(seed.substr(0, k));

  // Byte flips, insertions and deletions.
  std::vector<std::string> bare;
  for (const std::string& seed : seeds) bare.push_back(strip_comments(seed));
  for (int i = 0; i < 1600; ++i) fz.check(byte_mutant(bare[i % bare.size()], rng));

  // Token-level shuffles, deletions and duplications.
  std::vector<std::vector<std::string>> tokens;
  for (const std::string& seed : seeds) tokens.push_back(token_texts(seed));
  for (int i = 0; i < 1300; ++i) fz.check(token_mutant(tokens[i % tokens.size()], rng));

  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  MESSAGE("fuzz: " << fz.runs << " inputs, " << fz.accepted << " accepted, " << seconds << " s");
  if (!fz.without_hint.empty()) {
    std::string list;
    for (const std::string& m : fz.without_hint) list += "  " + m + "\n";
    MESSAGE("user errors without a hint (every error should have one):\n" << list);
  }
  CHECK(fz.runs >= 5000);
  CHECK(fz.failures == 0);
}
