# The compiled deck format, as C sees it (declarations only; ext/_engine.pyx implements).
#
# A compiled deck is one little-endian blob: a header, then sections, each
# starting on an 8-byte boundary. rater/deckformat.py writes it with numpy
# dtypes of exactly these layouts; tests/test_deckformat.py proves the two
# agree field by field. Every struct is laid out so that natural alignment
# leaves no hidden padding.

from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from *:
    """
    typedef __int128 rt_i128;
    #define rt_prefetch(p) __builtin_prefetch((const void*)(p))
    """
    # Cython only needs to know it is an integer; C sees the 128-bit type.
    ctypedef long long rt_i128
    void rt_prefetch(const void* p) nogil


cdef enum:
    LANES = 16              # calls walked through the trie together by the batch paths
    FORMAT_VERSION = 1
    FORMAT_VERSION_CUT = 2  # a deck with FLAG_CUT: an engine that reads format 1 only refuses it
    FLAG_SPLIT = 1          # price each increment by the row in force when it starts
    FLAG_CUT = 2            # with FLAG_SPLIT: cut the call where the row changes and at midnight
    MAX_DIGITS = 32
    MAX_RAW = 128           # longest raw number before normalisation
    NODE_NROWS = 0x7fff     # Node.nrows: how many rows the prefix has
    NODE_ALWAYS = 0x8000    # Node.nrows: its one row is in force at all times, for any profile

cdef enum Rounding:
    ROUND_UP = 0
    ROUND_HALF_UP = 1
    ROUND_HALF_EVEN = 2
    ROUND_DOWN = 3

cdef enum Status:
    # Negative results of the pricing functions (a cost is never negative).
    ST_UNMATCHED = -1       # no row prices the number at that instant
    ST_BAD_NUMBER = -2      # not a dialled number once normalised
    ST_BAD_CALL = -3        # negative duration, or an instant out of range
    ST_OVERFLOW = -4        # the cost does not fit in 63 bits of nanos

ctypedef struct DeckHeader:
    char magic[8]
    uint32_t format_version
    uint32_t flags
    uint64_t total_size
    int64_t denominator         # lcm of every tier's unit: exact sums are in nanos/denominator
    uint32_t n_nodes
    uint32_t n_rows
    uint32_t n_tiers
    uint32_t n_profiles
    uint32_t n_windows
    uint32_t n_dates
    uint32_t n_transitions
    uint32_t n_destinations
    uint64_t off_nodes
    uint64_t off_rows
    uint64_t off_tiers
    uint64_t off_profiles
    uint64_t off_windows
    uint64_t off_dates
    uint64_t off_tz_at
    uint64_t off_tz_wall
    uint64_t off_tz_offset
    uint64_t off_dest_index
    uint64_t off_dest_bytes
    uint64_t dest_bytes_size
    uint32_t n_prefixes
    uint32_t reserved0
    uint64_t reserved[3]

# A trie node. Children are stored contiguously in digit order (the trie is
# laid out breadth first): child d is first_child + popcount(mask & ((1<<d)-1)).
ctypedef struct Node:
    uint16_t mask               # bit d set: the node has a child for digit d
    uint16_t nrows              # rows of this exact prefix (NODE_NROWS), NODE_ALWAYS flag
    uint32_t first_child
    uint32_t rows               # index of the first row

ctypedef struct Row:
    int64_t eff_from            # instant, inclusive
    int64_t eff_to              # instant, exclusive (already the next row's start)
    int64_t connect_fee         # nanos
    int64_t cap                 # nanos, -1 for no cap
    int64_t rank                # higher wins where rows overlap; 0 without profile
    uint32_t tier_start
    uint32_t dest
    int32_t min_duration
    int32_t grace
    uint16_t tier_count
    int16_t profile             # -1: always
    uint8_t decimals
    uint8_t method              # Rounding
    uint16_t pad

ctypedef struct Tier:
    int64_t price               # nanos per unit
    int32_t from_s
    int32_t increment
    int32_t unit
    int32_t factor              # denominator / unit

ctypedef struct Profile:
    uint32_t days               # bit 0 Monday .. bit 6 Sunday
    uint32_t win_start
    uint32_t win_count
    uint32_t date_start
    uint32_t date_count         # dates are days since 1970-01-01, sorted
    uint32_t pad

ctypedef struct Window:
    int32_t start               # second of the day, inclusive
    int32_t end                 # second of the day, exclusive (86400 = midnight)

# One call's walk down the trie: its digits, where it is, the nodes with rows it passed.
ctypedef struct Walk:
    uint8_t digits[MAX_DIGITS]
    int n                       # digits of the number; < 0: not a number
    int i                       # digits consumed
    uint32_t node
    int sp
    uint32_t stack_node[MAX_DIGITS]
    uint8_t stack_len[MAX_DIGITS]

# A stretch of a call billed by one tier of one row (for explanations).
ctypedef struct Charge:
    int64_t row
    uint32_t tier
    int64_t from_s
    int64_t increments

ctypedef struct Charges:
    Charge* items
    int n
    int cap
    bint truncated

# The sections of one open deck, resolved to pointers once.
ctypedef struct Deck:
    const DeckHeader* h
    const Node* nodes
    const Row* rows
    const Tier* tiers
    const Profile* profiles
    const Window* windows
    const int32_t* dates
    const int64_t* tz_at
    const int64_t* tz_wall
    const int32_t* tz_offset
    const uint32_t* dest_index
    const char* dest_bytes
    int split
    int cut


