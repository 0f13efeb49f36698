#include "core/command.h"

#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace popgate::core {
namespace {

struct IntCase {
  const char* name;
  std::string token;
  std::optional<int> want;
};

// Each row names the strtol/pop_get_int boundary it probes
// (popa3d-behaviour.md §3.2).
const IntCase kIntCases[] = {
    {"Plain", "1", 1},
    {"Zero", "0", 0},
    {"PlusSign", "+1", 1},
    {"LeadingZeros", "01", 1},
    {"ManyLeadingZeros", "0000000000000000000000000000000007", 7},
    {"LeadingTab", "\t3", 3},
    {"LeadingVerticalTabFormFeedCr", "\v\f\r9", 9},
    {"TabThenPlus", "\t+4", 4},
    {"IntMax", "2147483647", 2147483647},
    {"IntMaxPlusOne", "2147483648", std::nullopt},
    {"TwoToThe32Plus1", "4294967297", std::nullopt},
    {"LongOverflow", "99999999999999999999", std::nullopt},
    {"LongOverflowWithLeadingZeros", "000099999999999999999999", std::nullopt},
    {"Empty", "", std::nullopt},
    {"OnlyWhitespace", "\t", std::nullopt},
    {"OnlyPlus", "+", std::nullopt},
    {"OnlyMinus", "-", std::nullopt},
    {"DoubleSign", "+-1", std::nullopt},
    {"Negative", "-1", std::nullopt},
    {"NegativeIntMin", "-2147483648", std::nullopt},
    {"MinusZeroIsZeroLikeStrtol", "-0", 0},
    {"TrailingJunk", "1x", std::nullopt},
    {"TrailingTab", "1\t", std::nullopt},
    {"TrailingCr", "1\r", std::nullopt},
    {"HexNotAccepted", "0x10", std::nullopt},
    {"Decimal", "1.0", std::nullopt},
    {"InnerSpaceNeverReachesHere", "1 2", std::nullopt},
    {"Nul", std::string("1\0", 2), std::nullopt},
    {"EightBit", "\xb9", std::nullopt},
};

class ParseIntTest : public ::testing::TestWithParam<IntCase> {};

TEST_P(ParseIntTest, MatchesStrtolRules) {
  EXPECT_EQ(ParseNonNegativeInt(GetParam().token), GetParam().want);
}

INSTANTIATE_TEST_SUITE_P(Boundaries, ParseIntTest,
                         ::testing::ValuesIn(kIntCases),
                         [](const ::testing::TestParamInfo<IntCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(ParseCommandLineTest, KeywordIsCaseInsensitive) {
  EXPECT_EQ(ParseCommandLine("uSeR bob").command, Command::kUser);
  EXPECT_EQ(ParseCommandLine("top 1 2").command, Command::kTop);
  EXPECT_EQ(ParseCommandLine("Capa").command, Command::kCapa);
}

TEST(ParseCommandLineTest, TabIsNotASeparator) {
  EXPECT_EQ(ParseCommandLine("USER\tx").command, Command::kUnknown);
  EXPECT_EQ(ParseCommandLine("NOOP\t").command, Command::kUnknown);
}

TEST(ParseCommandLineTest, EmptyRemainderMeansNoArguments) {
  CommandLine line = ParseCommandLine("STAT ");
  EXPECT_EQ(line.command, Command::kStat);
  EXPECT_FALSE(line.arguments.has_value());
  EXPECT_FALSE(ParseCommandLine("STAT").arguments.has_value());
}

TEST(ParseCommandLineTest, RemainderKeepsSpaces) {
  CommandLine line = ParseCommandLine("PASS  a b ");
  EXPECT_EQ(line.command, Command::kPass);
  EXPECT_EQ(line.arguments, " a b ");
}

TEST(ParseCommandLineTest, UnknownAndEmpty) {
  EXPECT_EQ(ParseCommandLine("").command, Command::kUnknown);
  EXPECT_EQ(ParseCommandLine(" LIST").command, Command::kUnknown);
  EXPECT_EQ(ParseCommandLine("LISTS").command, Command::kUnknown);
  EXPECT_EQ(ParseCommandLine("APOP a b").command, Command::kUnknown);
  EXPECT_EQ(ParseCommandLine("STLS").command, Command::kUnknown);
}

TEST(ArgumentReaderTest, SplitsAtSingleSpaces) {
  ArgumentReader args(absl::string_view("1 2"));
  EXPECT_EQ(args.NextToken(), "1");
  EXPECT_FALSE(args.done());
  EXPECT_EQ(args.NextToken(), "2");
  EXPECT_TRUE(args.done());
  EXPECT_EQ(args.NextToken(), std::nullopt);
}

TEST(ArgumentReaderTest, OneTrailingSpaceTolerated) {
  ArgumentReader args(absl::string_view("1 "));
  EXPECT_EQ(args.NextToken(), "1");
  EXPECT_TRUE(args.done());
}

TEST(ArgumentReaderTest, TwoTrailingSpacesLeaveAnArgument) {
  ArgumentReader args(absl::string_view("1  "));
  EXPECT_EQ(args.NextToken(), "1");
  EXPECT_FALSE(args.done());
}

TEST(ArgumentReaderTest, DoubleSpaceGivesEmptyToken) {
  ArgumentReader args(absl::string_view(" 1"));
  EXPECT_EQ(args.NextToken(), "");
  EXPECT_EQ(args.NextToken(), "1");
}

TEST(ArgumentReaderTest, FortyOctetsOkFortyOneInvalid) {
  const std::string forty(40, 'a');
  const std::string forty_one(41, 'a');
  EXPECT_EQ(ArgumentReader(absl::string_view(forty)).NextToken(), forty);
  const std::string line = forty_one + " x";
  ArgumentReader args{absl::string_view(line)};
  EXPECT_EQ(args.NextToken(), std::nullopt);
  EXPECT_EQ(args.NextToken(), "x");  // consumed anyway, as popa3d
}

TEST(ArgumentReaderTest, NoArguments) {
  ArgumentReader args(std::nullopt);
  EXPECT_TRUE(args.done());
  EXPECT_EQ(args.NextInt(), std::nullopt);
}

TEST(ArgumentReaderTest, FortyOneDigitNumberInvalid) {
  const std::string digits = std::string(40, '0') + "1";
  EXPECT_EQ(ArgumentReader(absl::string_view(digits)).NextInt(), std::nullopt);
  EXPECT_EQ(ArgumentReader(absl::string_view(digits.substr(1))).NextInt(), 1);
}

}  // namespace
}  // namespace popgate::core
