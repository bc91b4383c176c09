#!/usr/bin/env python3
"""Boundary lint: the C++/PostgreSQL boundary rules of src/pg that the compiler cannot check.

A PostgreSQL error longjmps: it skips the destructors of the C++ frames it crosses, and a C++ exception must
not cross PostgreSQL's frames. So:

  rule a: the body of a lambda passed to ls_cpp( / try_cpp( / ls_cpp_cancellable( (the guarded C++ work)
          calls no PostgreSQL function or function-like macro. PostgreSQL code inside it runs in a lambda
          passed to pg_call(, which turns a PostgreSQL error into a C++ exception.
  rule b: a frame that calls PostgreSQL (a function of src/pg, a lambda run in it, a pg_call lambda) holds
          no C++ object with a non-trivial destructor: no local variable, no parameter by value, of a type
          such as std::string, std::vector, std::map, std::optional<std::string>, std::unique_ptr,
          std::function, or a class of leadscore with such a member or a destructor.

"PostgreSQL function" = a function (prototype or static inline) or function-like macro declared in the
PostgreSQL server headers that src/pg includes (pg.h's, and the headers they include), gathered with
universal-ctags (cached in build/lint/), minus ALLOWED below.

This is a heuristic parser, not a compiler: it understands function bodies, lambdas, declarations and
struct/class definitions well enough for this code base. Direct calls only: a call to a leadscore function
that itself raises is not followed.

Usage: boundary.py [--no-self-test] [--headers DIR] [FILE ...]   (default: src/pg/**/*.cpp, *.h)
The fixtures of test/lint/fixtures/ are checked first: each bad_*.cpp must give the findings its first line
announces ("// expect: a=N b=M"), each good_*.cpp none; else the lint fails without looking further.
Exit status: 0 no finding, 1 findings (or a failed self-test), 2 the lint could not run.
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
HEADERS = '/usr/include/postgresql/15/server'
CACHE_DIR = os.path.join(ROOT, 'build', 'lint')
FIXTURES = os.path.join(ROOT, 'test', 'lint', 'fixtures')

# Callables whose lambda argument is guarded C++ work (pg.h: ls_cpp, try_cpp; predict/data.h:
# ls_cpp_cancellable, which passes it to try_cpp).
GUARDS = {'ls_cpp', 'try_cpp', 'ls_cpp_cancellable'}
# Its lambda argument is PostgreSQL code run under PG_TRY (pg_call.h).
PG_CALLS = {'pg_call'}

# PostgreSQL macros and functions that are pure and never raise an ERROR: they may run inside ls_cpp.
# Each entry says why. Everything else declared in the server headers counts as a PostgreSQL call.
ALLOWED = {
    # Datum <-> C value conversions: casts and bit copies (postgres.h), no allocation, no check.
    'DatumGetBool': 'cast', 'BoolGetDatum': 'cast',
    'DatumGetInt16': 'cast', 'Int16GetDatum': 'cast',
    'DatumGetInt32': 'cast', 'Int32GetDatum': 'cast',
    'DatumGetInt64': 'cast (by-value int8 on 64-bit builds)', 'Int64GetDatum': 'cast (by-value int8 on 64-bit builds)',
    'DatumGetUInt32': 'cast', 'UInt32GetDatum': 'cast',
    'DatumGetObjectId': 'cast', 'ObjectIdGetDatum': 'cast',
    'DatumGetFloat4': 'bit copy', 'Float4GetDatum': 'bit copy',
    'DatumGetFloat8': 'bit copy (by-value float8 on 64-bit builds)',
    'Float8GetDatum': 'bit copy (by-value float8 on 64-bit builds)',
    'DatumGetPointer': 'cast', 'PointerGetDatum': 'cast',
    'DatumGetCString': 'cast', 'CStringGetDatum': 'cast',
    'DatumGetTimestampTz': 'cast', 'TimestampTzGetDatum': 'cast',
    # Arithmetic macros of c.h.
    'UINT64CONST': 'integer literal', 'INT64CONST': 'integer literal',
    'Min': 'arithmetic', 'Max': 'arithmetic', 'Abs': 'arithmetic', 'lengthof': 'sizeof arithmetic',
    # Reads of a varlena header, no detoasting (postgres.h).
    'VARSIZE': 'header read', 'VARSIZE_ANY': 'header read', 'VARSIZE_ANY_EXHDR': 'header read',
    'VARDATA': 'pointer arithmetic', 'VARDATA_ANY': 'pointer arithmetic',
    # List length and element reads (pg_list.h): field reads, no allocation.
    'list_length': 'field read', 'list_nth': 'array read', 'list_nth_int': 'array read',
    'list_nth_oid': 'array read', 'lfirst': 'field read', 'lfirst_int': 'field read', 'lfirst_oid': 'field read',
    # Assertions: compiled out in production builds, and abort (no longjmp) in assert-enabled ones.
    'Assert': 'abort, not longjmp', 'AssertMacro': 'abort, not longjmp', 'StaticAssertStmt': 'compile time',
    'StaticAssertExpr': 'compile time',
}

# Standard types whose destructor is never trivial.
NON_TRIVIAL_STD = {
    'string', 'wstring', 'basic_string', 'vector', 'map', 'multimap', 'unordered_map', 'unordered_multimap',
    'set', 'multiset', 'unordered_set', 'unordered_multiset', 'deque', 'list', 'forward_list', 'queue',
    'priority_queue', 'stack', 'function', 'unique_ptr', 'shared_ptr', 'weak_ptr', 'any', 'ostringstream',
    'istringstream', 'stringstream', 'ofstream', 'ifstream', 'fstream', 'regex', 'locale', 'exception_ptr',
    'thread', 'exception', 'runtime_error', 'logic_error', 'invalid_argument', 'out_of_range', 'bad_alloc',
}
# Standard templates that are trivially destructible exactly when their arguments are.
WRAPPERS = {'optional', 'pair', 'tuple', 'variant', 'array'}
# Functions whose result, assigned to `auto`, is an object with a destructor.
NON_TRIVIAL_FACTORIES = {'to_string', 'make_unique', 'make_shared', 'move_if_noexcept'}

KEYWORDS = {
    'return', 'if', 'else', 'for', 'while', 'do', 'switch', 'case', 'default', 'break', 'continue', 'goto',
    'delete', 'throw', 'using', 'typedef', 'try', 'catch', 'new', 'sizeof', 'alignof', 'decltype',
    'static_assert', 'namespace', 'template', 'typename', 'operator', 'public', 'private', 'protected',
    'friend', 'co_return', 'this', 'true', 'false', 'nullptr', 'noexcept', 'asm', 'PG_TRY', 'PG_CATCH',
    'PG_END_TRY', 'PG_FINALLY',
}
DECL_SPECIFIERS = {'static', 'const', 'constexpr', 'volatile', 'register', 'thread_local', 'inline', 'extern',
                   'mutable', 'struct', 'class', 'enum', 'union', 'unsigned', 'signed'}


class Lint(Exception):
    pass


# ------------------------------------------------------------------------------------------------------
# Tokens


class Tok:
    __slots__ = ('kind', 'text', 'line')

    def __init__(self, kind, text, line):
        self.kind, self.text, self.line = kind, text, line

    def __repr__(self):
        return '%s@%d' % (self.text, self.line)


TOKEN_RE = re.compile(r'''
    (?P<ws>[ \t\r\f\v]+)
  | (?P<nl>\n)
  | (?P<lcomment>//[^\n]*)
  | (?P<bcomment>/\*.*?\*/)
  | (?P<raw>R"(?P<delim>[^(\s]*)\(.*?\)(?P=delim)")
  | (?P<string>(?:u8|u|U|L)?"(?:\\.|[^"\\\n])*")
  | (?P<char>(?:u8|u|U|L)?'(?:\\.|[^'\\\n])+')
  | (?P<number>\.?[0-9](?:[eEpP][+-]|[0-9A-Za-z_.']|)*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>::|->\*?|\.\.\.|<<=|>>=|&&|\|\||[-+*/%&|^!=<>]=|\+\+|--|<<|[][(){}<>;:,.?~!%^&*|+\-=/#\\@$])
''', re.S | re.X)


def tokenize(text):
    """Tokens of C++ source, without comments and preprocessor lines (a #define body is not code of ours)."""
    toks = []
    line = 1
    pos = 0
    at_line_start = True
    n = len(text)
    while pos < n:
        m = TOKEN_RE.match(text, pos)
        if not m:
            raise Lint('cannot read the character %r at line %d' % (text[pos], line))
        kind = m.lastgroup
        s = m.group(0)
        if kind == 'delim':
            kind = 'raw'
        if kind == 'punct' and s == '#' and at_line_start:
            # A preprocessor line, with its continuations.
            end = pos
            while True:
                nl = text.find('\n', end)
                if nl < 0:
                    end = n
                    break
                if text[nl - 1] == '\\':
                    end = nl + 1
                    continue
                end = nl
                break
            line += text.count('\n', pos, end)
            pos = end
            continue
        if kind == 'nl':
            line += 1
            at_line_start = True
        elif kind in ('ws',):
            pass
        elif kind in ('lcomment', 'bcomment'):
            line += s.count('\n')
        else:
            at_line_start = False
            if kind == 'raw':
                kind = 'string'
            toks.append(Tok(kind, s, line))
            line += s.count('\n')
        pos = m.end()
    return toks


def match_brackets(toks):
    """match[i] = index of the bracket closing/opening toks[i], for (), [] and {}."""
    match = [-1] * len(toks)
    stack = []
    pairs = {')': '(', ']': '[', '}': '{'}
    for i, t in enumerate(toks):
        if t.kind != 'punct':
            continue
        if t.text in '([{':
            stack.append(i)
        elif t.text in pairs:
            if not stack or toks[stack[-1]].text != pairs[t.text]:
                raise Lint('unbalanced %r at line %d' % (t.text, t.line))
            j = stack.pop()
            match[i], match[j] = j, i
    if stack:
        raise Lint('unclosed %r at line %d' % (toks[stack[-1]].text, toks[stack[-1]].line))
    return match


def skip_angles(toks, i, end):
    """toks[i] is '<': the index after the matching '>' (template arguments), or i if it does not close."""
    depth = 0
    j = i
    while j < end:
        t = toks[j].text
        if t == '<':
            depth += 1
        elif t == '>':
            depth -= 1
        elif t == '>>':
            depth -= 2
        elif t in (';', '{', '}') or (t == ')' and depth > 0 and False):
            return i
        elif t in ('(', '['):
            # A function type inside template arguments: std::function<void(int)>.
            k = j
            depth2 = 0
            while k < end:
                if toks[k].text in ('(', '['):
                    depth2 += 1
                elif toks[k].text in (')', ']'):
                    depth2 -= 1
                    if depth2 == 0:
                        break
                k += 1
            j = k
        if depth <= 0:
            return j + 1
        j += 1
    return i


# ------------------------------------------------------------------------------------------------------
# Types


class Types:
    """Which type names have a non-trivial destructor: the standard ones above, and leadscore's structs,
    classes and aliases read from src/ (a struct with such a member, a base or a destructor)."""

    def __init__(self):
        self.classes = {}   # name -> list of (bases, member type token lists, has_destructor)
        self.aliases = {}   # name -> type token list
        self.memo = {}

    def add_source(self, toks, match):
        n = len(toks)
        i = 0
        while i < n:
            t = toks[i]
            if t.text in ('struct', 'class') and i + 1 < n and toks[i + 1].kind == 'ident':
                name = toks[i + 1].text
                j = i + 2
                while j < n and toks[j].text in ('final',):
                    j += 1
                bases = []
                if j < n and toks[j].text == ':':
                    k = j + 1
                    while k < n and toks[k].text not in ('{', ';'):
                        if toks[k].kind == 'ident' and toks[k].text not in ('public', 'private', 'protected',
                                                                             'virtual'):
                            bases.append(toks[k].text)
                        k += 1
                    j = k
                if j < n and toks[j].text == '{':
                    self.classes.setdefault(name, []).append(self._members(toks, match, j, name, bases))
            elif t.text == 'using' and i + 3 < n and toks[i + 1].kind == 'ident' and toks[i + 2].text == '=':
                j = i + 3
                while j < n and toks[j].text != ';':
                    j += 1
                self.aliases[toks[i + 1].text] = [x.text for x in toks[i + 3:j]]
            elif t.text == 'typedef':
                j = i + 1
                while j < n and toks[j].text != ';':
                    j += 1
                if j - 1 > i + 1 and toks[j - 1].kind == 'ident':
                    self.aliases[toks[j - 1].text] = [x.text for x in toks[i + 1:j - 1]]
            i += 1

    def _members(self, toks, match, lbrace, name, bases):
        rbrace = match[lbrace]
        members = []
        destructor = False
        stmt = []
        j = lbrace + 1
        while j < rbrace:
            t = toks[j]
            if t.text == '~' and j + 1 < rbrace and toks[j + 1].text == name:
                # `~X() = default;` alone keeps the members' triviality.
                k = match[j + 2] + 1 if toks[j + 2].text == '(' else j + 2
                if not (k + 1 < rbrace and toks[k].text == '=' and toks[k + 1].text == 'default'):
                    destructor = True
            if t.text == '{':
                # A method body or a nested definition (read on its own) or a brace initializer.
                if stmt and not self._is_function(stmt):
                    stmt.append(t)
                    stmt.append(toks[match[j]])
                else:
                    stmt = []
                j = match[j] + 1
                continue
            if t.text == ';':
                field = self._field_type(stmt)
                if field is not None:
                    members.append(field)
                stmt = []
            elif t.text == ':' and len(stmt) == 1 and stmt[0].text in ('public', 'private', 'protected'):
                stmt = []
            else:
                stmt.append(t)
            j += 1
        return (bases, members, destructor)

    @staticmethod
    def _is_function(stmt):
        depth = 0
        for t in stmt:
            if t.text == '<':
                depth += 1
            elif t.text == '>':
                depth -= 1
            elif t.text in ('=',):
                return False
            elif t.text == '(' and depth <= 0:
                return True
        return False

    def _field_type(self, stmt):
        if not stmt or stmt[0].text in ('using', 'typedef', 'friend', 'static', 'enum', 'template', 'struct',
                                        'class', 'static_assert'):
            return None
        if self._is_function(stmt):
            return None
        # The type: the tokens before the first declarator's name (the identifier before = { , ; [ :).
        cut = len(stmt)
        depth = 0
        for k, t in enumerate(stmt):
            if t.text == '<':
                depth += 1
            elif t.text == '>':
                depth -= 1
            elif depth <= 0 and t.text in ('=', ',', '[', ':', '{'):
                cut = k
                break
        type_toks = [t.text for t in stmt[:cut - 1]]
        if not type_toks or any(x in ('*', '&', '&&') for x in type_toks if x) and self._top_level_ptr(type_toks):
            return None
        return type_toks

    @staticmethod
    def _top_level_ptr(type_toks):
        depth = 0
        for x in type_toks:
            if x == '<':
                depth += 1
            elif x == '>':
                depth -= 1
            elif x in ('*', '&', '&&') and depth == 0:
                return True
        return False

    def non_trivial(self, type_toks, seen=None):
        """type_toks: the tokens of a type (qualifiers and template arguments included); pointers and references
        are trivial. Unknown names (PostgreSQL's typedefs, scalars) are trivial."""
        toks = [x for x in type_toks if x not in ('const', 'volatile', 'typename', 'struct', 'class', 'static',
                                                  'constexpr', 'mutable', 'inline', 'register', 'thread_local')]
        if not toks or self._top_level_ptr(toks):
            return False
        key = ' '.join(toks)
        if key in self.memo:
            return self.memo[key]
        seen = set() if seen is None else seen
        if key in seen:
            return False
        seen.add(key)
        # The outermost name: the last identifier before any template argument list.
        head, args = None, []
        depth = 0
        cur = []
        for x in toks:
            if x == '<':
                if depth > 0:
                    cur.append(x)
                depth += 1
                continue
            if x in ('>', '>>'):
                depth -= 1 if x == '>' else 2
                if depth > 0:
                    cur.append(x)
                elif cur:
                    args.append(cur)
                    cur = []
                continue
            if depth == 0:
                if re.match(r'[A-Za-z_]\w*$', x):
                    head = x
                    args = []
            elif depth == 1 and x == ',':
                args.append(cur)
                cur = []
            else:
                cur.append(x)
        result = False
        if head is None:
            result = False
        elif head in NON_TRIVIAL_STD:
            result = True
        elif head in WRAPPERS:
            result = any(self.non_trivial(a, seen) for a in args)
        elif head in self.aliases:
            result = self.non_trivial(self.aliases[head], seen)
        elif head in self.classes:
            for bases, members, destructor in self.classes[head]:
                if destructor or any(self.non_trivial([b], seen) for b in bases) or \
                        any(self.non_trivial(m, seen) for m in members):
                    result = True
        self.memo[key] = result
        return result


# ------------------------------------------------------------------------------------------------------
# Frames: function bodies and lambda bodies


class Frame:
    def __init__(self, kind, name, lbrace, rbrace, params, parent):
        self.kind = kind          # function, guarded, pg_call, lambda
        self.name = name
        self.lbrace, self.rbrace = lbrace, rbrace
        self.params = params      # (lparen, rparen) or None
        self.parent = parent
        self.children = []
        self.local_classes = []   # (first token, closing brace) of struct/class definitions in the body
        if parent:
            parent.children.append(self)

    def guarded(self):
        """Runs inside ls_cpp: C++ context (until a pg_call lambda)."""
        f = self
        while f:
            if f.kind == 'guarded':
                return True
            if f.kind == 'pg_call':
                return False
            f = f.parent
        return False

    def own_ranges(self):
        """Token ranges of the body that belong to this frame (nested lambdas and local struct bodies left
        out)."""
        cuts = [(c.intro, c.rbrace) for c in self.children] + self.local_classes
        ranges = []
        start = self.lbrace + 1
        for a, b in sorted(cuts):
            if a < start:
                continue
            ranges.append((start, a))
            start = b + 1
        ranges.append((start, self.rbrace))
        return ranges


def lambda_at(toks, match, i, end):
    """If toks[i] ('[') introduces a lambda: (lparen, rparen or None, lbrace). Else None."""
    if toks[i].text != '[' or match[i] < 0:
        return None
    prev = toks[i - 1] if i > 0 else None
    if prev is not None and (prev.kind in ('ident', 'number', 'string') and prev.text not in ('return',)
                             or prev.text in (')', ']')):
        return None  # a subscript
    j = match[i] + 1
    params = None
    if j < end and toks[j].text == '(':
        params = (j, match[j])
        j = match[j] + 1
    while j < end and toks[j].text != '{':
        if toks[j].text in (';', ')', ',', '}', ']'):
            return None
        if toks[j].text == '(':
            j = match[j]
        j += 1
    if j >= end:
        return None
    return (params, j)


def enclosing_call(toks, parens, i):
    """The name of the call whose argument list holds toks[i], or None."""
    p = parens[i]
    if p is None or p == 0:
        return None
    t = toks[p - 1]
    return t.text if t.kind == 'ident' else None


def find_frames(toks, match):
    n = len(toks)
    # parens[i]: the innermost unclosed '(' at toks[i].
    parens = [None] * n
    stack = []
    for i, t in enumerate(toks):
        parens[i] = stack[-1] if stack else None
        if t.text == '(':
            stack.append(i)
        elif t.text == ')' and stack:
            stack.pop()
        elif t.text in ('{', '}', ';') and False:
            pass
    frames = []

    def scan_body(frame):
        i = frame.lbrace + 1
        while i < frame.rbrace:
            if toks[i].text in ('struct', 'class', 'union', 'enum'):
                # A local definition: its members are not locals of the frame.
                k = i + 1
                while k < frame.rbrace and toks[k].text not in ('{', ';', '(', ')', '='):
                    k += 1
                if k < frame.rbrace and toks[k].text == '{':
                    frame.local_classes.append((i, match[k]))
                    i = match[k] + 1
                    continue
            if toks[i].text == '[':
                lam = lambda_at(toks, match, i, frame.rbrace)
                if lam:
                    params, lbrace = lam
                    call = enclosing_call(toks, parens, i)
                    kind = 'guarded' if call in GUARDS else 'pg_call' if call in PG_CALLS else 'lambda'
                    child = Frame(kind, call or 'lambda', lbrace, match[lbrace], params, frame)
                    child.intro = i
                    child.capture = (i, match[i])
                    scan_body(child)
                    i = match[lbrace] + 1
                    continue
            i += 1

    def scope(start, end):
        """A namespace, extern "C" or class body: find the function definitions in it."""
        i = start
        while i < end:
            t = toks[i]
            if t.text == '{':
                kind = classify_brace(i, start)
                if kind == 'function':
                    rp = prev_paren(i)
                    lp = match[rp]
                    name = toks[lp - 1].text if lp > 0 else '?'
                    if lp > 1 and toks[lp - 2].text == '::':
                        name = toks[lp - 3].text + '::' + name
                    f = Frame('function', name, i, match[i], (lp, rp), None)
                    f.intro = i
                    frames.append(f)
                    scan_body(f)
                elif kind == 'scope':
                    scope(i + 1, match[i])
                i = match[i] + 1
                continue
            i += 1

    def prev_paren(i):
        """The ')' closing the parameter list of a function whose body opens at toks[i], or None."""
        j = i - 1
        while j >= 0:
            x = toks[j].text
            if x in ('const', 'noexcept', 'override', 'final', 'volatile', '&', '&&'):
                j -= 1
                continue
            if x == ')':
                # noexcept(...) or a member initializer m(x) in `: a(x), b(y)`: find the parameter list.
                lp = match[j]
                before = toks[lp - 1].text if lp > 0 else ''
                if before == 'noexcept':
                    j = lp - 2
                    continue
                # Walk back over a constructor's member initializer list.
                k = lp - 2
                if k >= 0 and toks[lp - 1].kind == 'ident' and toks[k].text in (',', ':'):
                    # Is this a member initializer? Look for the ':' after the parameter list.
                    m = k
                    while m >= 0 and toks[m].text != ':':
                        if toks[m].text in (')', '}'):
                            m = match[m]
                        m -= 1
                        if m >= 0 and toks[m].text in (';', '{'):
                            break
                    if m > 0 and toks[m].text == ':' and toks[m - 1].text == ')':
                        return m - 1
                return j
            if x == '}' and toks[match[j] - 1].kind == 'ident':
                # A member initializer b{y} ending the list.
                m = match[j] - 1
                while m >= 0 and toks[m].text != ':':
                    if toks[m].text in (')', '}'):
                        m = match[m]
                    m -= 1
                if m > 0 and toks[m - 1].text == ')':
                    return m - 1
                return None
            if toks[j].kind == 'ident' and j > 0 and toks[j - 1].text == '->':
                j -= 2  # trailing return type (one identifier)
                continue
            return None
        return None

    def classify_brace(i, start):
        j = i - 1
        # `namespace x {`, `extern "C" {`, `struct X ... {`, `enum ... {`, `= {`
        k = j
        while k >= start and toks[k].text not in (';', '{', '}', ')', '='):
            if toks[k].text in ('namespace',) or (toks[k].kind == 'string' and k > 0 and
                                                  toks[k - 1].text == 'extern'):
                return 'scope'
            if toks[k].text in ('struct', 'class', 'union'):
                return 'scope'
            if toks[k].text == 'enum':
                return 'other'
            k -= 1
        if j >= 0 and toks[j].text == 'namespace':
            return 'scope'
        if prev_paren(i) is not None:
            return 'function'
        return 'other'

    scope(0, n)
    return frames


# ------------------------------------------------------------------------------------------------------
# Calls and declarations


def pg_calls(toks, ranges, pg_names):
    """(token index, name) of each call of a PostgreSQL function in the given ranges."""
    out = []
    for a, b in ranges:
        for i in range(a, b):
            t = toks[i]
            if t.kind != 'ident' or t.text not in pg_names or t.text in ALLOWED:
                continue
            if i + 1 >= len(toks) or toks[i + 1].text != '(':
                continue
            prev = toks[i - 1] if i > 0 else None
            if prev is not None and prev.text in ('.', '->'):
                continue  # a member
            if prev is not None and prev.text == '::' and i > 1 and toks[i - 2].kind == 'ident':
                continue  # qualified: std::..., leadscore::...
            if prev is not None and (prev.text in ('~', 'struct', 'class', 'enum') or
                                     (prev.kind == 'ident' and prev.text not in KEYWORDS and
                                      prev.text not in ('else', 'do'))):
                # `Type name(...)`: a declaration of a variable or function with that name, not a call.
                if prev.text not in ('return', 'case', 'throw', 'delete', 'new', 'sizeof'):
                    continue
            out.append((i, t.text))
    return out


def parse_type(toks, i, end):
    """Tokens of a type starting at toks[i]: (type token list, index after it) or None."""
    j = i
    type_toks = []
    while j < end and toks[j].text in DECL_SPECIFIERS:
        type_toks.append(toks[j].text)
        j += 1
    if j < end and toks[j].text == '::':
        type_toks.append('::')
        j += 1
    if j >= end or toks[j].kind != 'ident' or toks[j].text in KEYWORDS:
        return None
    while True:
        if j >= end or toks[j].kind != 'ident' or toks[j].text in KEYWORDS:
            return None
        type_toks.append(toks[j].text)
        j += 1
        if j < end and toks[j].text == '<':
            k = skip_angles(toks, j, end)
            if k == j:
                return None
            type_toks.extend(t.text for t in toks[j:k])
            j = k
        if j < end and toks[j].text == '::':
            type_toks.append('::')
            j += 1
            continue
        break
    # Scalars spelled in several words: unsigned long long, long double...
    while j < end and toks[j].text in ('int', 'long', 'short', 'char', 'double', 'const', 'volatile'):
        type_toks.append(toks[j].text)
        j += 1
    while j < end and toks[j].text in ('*', '&', '&&', 'const', 'volatile'):
        type_toks.append(toks[j].text)
        j += 1
    return type_toks, j


def declarations(toks, match, ranges, in_for=False):
    """(token index of the name, name, type token list, auto initializer index) of the local variables
    declared in the ranges (statement starts only)."""
    out = []
    starts = set()
    for a, b in ranges:
        for i in range(a, b):
            p = toks[i - 1].text if i > 0 else ';'
            if p in (';', '{', '}') or (p == '(' and i > 1 and toks[i - 2].text == 'for'):
                starts.add(i)
            elif p == ':' and i > 1 and toks[i - 2].text in ('public', 'private', 'protected', 'default'):
                starts.add(i)
            elif p == ')' and match[i - 1] > 0 and toks[match[i - 1] - 1].text in ('if', 'while', 'for') and \
                    toks[i].text != '{':
                starts.add(i)
            elif p == 'else' and toks[i].text != '{':
                starts.add(i)
    for a, b in ranges:
        for i in range(a, b):
            if i not in starts:
                continue
            parsed = parse_type(toks, i, b)
            if not parsed:
                continue
            type_toks, j = parsed
            # One or more declarators: name [= init | (init) | {init}] , ...
            while j < b and toks[j].kind == 'ident' and toks[j].text not in KEYWORDS:
                if j + 1 >= b or toks[j + 1].text not in ('=', ';', ',', '(', '{', '[', ':', ')'):
                    break
                if toks[j + 1].text == ':' and not (toks[i - 1].text == '(' and toks[i - 2].text == 'for'):
                    break
                if toks[j + 1].text == ')' and not (toks[i - 1].text == '(' and toks[i - 2].text == 'for'):
                    break
                out.append((j, toks[j].text, type_toks, j + 2 if toks[j + 1].text == '=' else None))
                # Skip the initializer to the next declarator.
                k = j + 1
                while k < b and toks[k].text not in (',', ';', ':', ')'):
                    if toks[k].text in ('(', '[', '{'):
                        k = match[k]
                    k += 1
                if k < b and toks[k].text == ',':
                    j = k + 1
                    # A later declarator may add * or &: `std::string a, *b`.
                    extra = []
                    while j < b and toks[j].text in ('*', '&', '&&'):
                        extra.append(toks[j].text)
                        j += 1
                    if extra:
                        type_toks = [x for x in type_toks if x not in ('*', '&', '&&')] + extra
                    else:
                        type_toks = [x for x in type_toks if x not in ('*', '&', '&&')]
                    continue
                break
    return out


def parameters(toks, match, lp, rp):
    """(index, name, type token list) of the named parameters in toks[lp+1:rp]."""
    out = []
    i = lp + 1
    while i < rp:
        # One parameter: to the next top-level ','.
        j = i
        while j < rp and toks[j].text != ',':
            if toks[j].text in ('(', '[', '{'):
                j = match[j]
            elif toks[j].text == '<':
                k = skip_angles(toks, j, rp)
                if k > j:
                    j = k - 1
            j += 1
        part = toks[i:j]
        eq = next((k for k, t in enumerate(part) if t.text == '='), len(part))
        part = part[:eq]
        if len(part) >= 2 and part[-1].kind == 'ident' and part[-1].text not in KEYWORDS:
            out.append((i + len(part) - 1, part[-1].text, [t.text for t in part[:-1]]))
        i = j + 1
    return out


def auto_non_trivial(toks, init, types):
    """`auto x = init`: whether init visibly builds an object with a destructor (std::string(...),
    std::to_string(...), std::make_unique<...>(...), a leadscore class's constructor)."""
    if init is None or init >= len(toks):
        return False
    parsed = parse_type(toks, init, len(toks))
    if not parsed:
        return False
    type_toks, j = parsed
    if j < len(toks) and toks[j].text in ('(', '{'):
        head = [x for x in type_toks if re.match(r'[A-Za-z_]\w*$', x)]
        if head and head[-1] in NON_TRIVIAL_FACTORIES:
            return True
        return types.non_trivial(type_toks)
    return False


# ------------------------------------------------------------------------------------------------------
# The lint


def lint_file(path, display, pg_names, types, findings):
    with open(path, encoding='utf-8') as f:
        toks = tokenize(f.read())
    match = match_brackets(toks)
    for frame in find_frames(toks, match):
        lint_frame(frame, toks, match, display, pg_names, types, findings)


def lint_frame(frame, toks, match, display, pg_names, types, findings):
    ranges = frame.own_ranges()
    if frame.kind in ('guarded', 'lambda') and frame.guarded():
        for i, name in pg_calls(toks, ranges, pg_names):
            findings.append((display, toks[i].line, 'a',
                             'PostgreSQL call %s() inside a lambda guarded by %s(): call it through pg_call(), '
                             'or before/after the guarded C++ work' % (name, guard_name(frame))))
    elif not frame.guarded():
        calls = pg_calls(toks, ranges, pg_names)
        if calls:
            first = toks[calls[0][0]]
            where = 'function %s' % frame.name if frame.kind == 'function' else \
                'a lambda passed to pg_call()' if frame.kind == 'pg_call' else 'a lambda'
            why = '%s calls PostgreSQL (%s() at line %d), whose error would longjmp over it' % (
                where, calls[0][1], first.line)
            decls = []
            if frame.params and frame.kind != 'guarded':
                lp, rp = frame.params
                decls += [(i, name, t, None, 'parameter') for i, name, t in parameters(toks, match, lp, rp)]
            decls += [(i, name, t, init, 'local') for i, name, t, init in declarations(toks, match, ranges)]
            for i, name, type_toks, init, what in decls:
                bare = [x for x in type_toks if x not in DECL_SPECIFIERS or x in ('unsigned', 'signed')]
                if bare == ['auto']:
                    bad = auto_non_trivial(toks, init, types)
                else:
                    bad = types.non_trivial(type_toks)
                if 'static' in type_toks:
                    bad = False  # not in the frame
                if bad:
                    findings.append((display, toks[i].line, 'b',
                                     'C++ object with a destructor in a PostgreSQL frame: %s %s (%s): %s; '
                                     'move the C++ work into ls_cpp(), or own the object by a memory context '
                                     '(ls_owned)' % (what, name, spell(type_toks), why)))
    for child in frame.children:
        lint_frame(child, toks, match, display, pg_names, types, findings)


def spell(type_toks):
    """A type's tokens as written: std::optional<std::string>."""
    out = ''
    for x in type_toks:
        if out and re.match(r'\w', x) and re.match(r'.*\w$', out):
            out += ' '
        out += x + (' ' if x == ',' else '')
    return out


def guard_name(frame):
    f = frame
    while f and f.kind != 'guarded':
        f = f.parent
    return f.name if f else 'ls_cpp'


# ------------------------------------------------------------------------------------------------------
# PostgreSQL's names


INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*[<"]([^>"]+)[>"]', re.M)


def included_headers(headers, sources):
    """The server headers that the sources include, directly or through other headers (pg.h includes them
    all): a name declared only in a header leadscore never sees (snowball's `#define malloc palloc`) is not
    PostgreSQL's for this code."""
    todo = []
    for path in sources:
        with open(path, encoding='utf-8') as f:
            todo += INCLUDE_RE.findall(f.read())
    seen = set()
    out = []
    while todo:
        name = todo.pop()
        full = os.path.join(headers, name)
        if name in seen or not os.path.isfile(full):
            continue
        seen.add(name)
        out.append(full)
        with open(full, encoding='utf-8', errors='replace') as f:
            todo += INCLUDE_RE.findall(f.read())
    return sorted(out)


def pg_function_names(headers, sources):
    """Functions and function-like macros of the PostgreSQL server headers that the sources include
    (universal-ctags), cached in build/lint/ by the headers' names and modification times."""
    if not os.path.isdir(headers):
        raise Lint('no PostgreSQL server headers in %s: install postgresql-server-dev-15 '
                   '(bash scripts/setup.sh does)' % headers)
    ctags = shutil.which('ctags') or shutil.which('ctags-universal')
    if not ctags:
        raise Lint('ctags is not installed: install the Debian package universal-ctags (bash scripts/setup.sh does)')
    version = subprocess.run([ctags, '--version'], capture_output=True, text=True).stdout
    if 'Universal Ctags' not in version:
        raise Lint('%s is not universal-ctags (%s): install the Debian package universal-ctags'
                   % (ctags, version.splitlines()[0] if version else '?'))
    files = included_headers(headers, sources)
    if not files:
        raise Lint('the sources include no header of %s' % headers)
    stamp = hashlib.sha1(('%s\n' % version.splitlines()[0] + '\n'.join(
        '%s %f' % (f, os.stat(f).st_mtime) for f in files)).encode()).hexdigest()
    cache = os.path.join(CACHE_DIR, 'pg_names.txt')
    try:
        with open(cache) as f:
            if f.readline().strip() == stamp:
                return set(x.strip() for x in f if x.strip())
    except OSError:
        pass
    out = subprocess.run([ctags, '-x', '--languages=C', '--langmap=C:+.h', '--kinds-C=dfp',
                          '--_xformat=%N\t%K\t%S', '-L', '-'], input='\n'.join(files) + '\n',
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise Lint('ctags failed: %s' % out.stderr.strip())
    names = set()
    for line in out.stdout.splitlines():
        parts = line.split('\t')
        if len(parts) < 3:
            continue
        name, kind, sig = parts[0], parts[1], parts[2]
        if kind == 'macro' and sig in ('-', ''):
            continue  # an object-like macro: a constant, a variable or a type, not a call
        names.add(name)
    os.makedirs(CACHE_DIR, exist_ok=True)
    tmp = cache + '.tmp%d' % os.getpid()
    with open(tmp, 'w') as f:
        f.write(stamp + '\n')
        f.write('\n'.join(sorted(names)) + '\n')
    os.replace(tmp, cache)
    return names


def source_files(root):
    out = []
    for d, _, files in os.walk(root):
        for f in files:
            if f.endswith(('.cpp', '.h')):
                out.append(os.path.join(d, f))
    return sorted(out)


def load_types(extra=()):
    types = Types()
    for path in source_files(os.path.join(ROOT, 'src')) + list(extra):
        with open(path, encoding='utf-8') as f:
            toks = tokenize(f.read())
        types.add_source(toks, match_brackets(toks))
    return types


MARK_RE = re.compile(r'//\s*<-\s*([ab])\b')


def self_test(pg_names):
    """The fixtures: each bad_*.cpp must give exactly the findings its lines announce (a comment "// <- a" or
    "// <- b" on the line), each good_*.cpp none; both rules must be exercised."""
    problems = []
    fixtures = sorted(f for f in os.listdir(FIXTURES) if f.endswith('.cpp'))
    if not any(f.startswith('bad_') for f in fixtures) or not any(f.startswith('good_') for f in fixtures):
        return ['test/lint/fixtures/ must hold bad_*.cpp and good_*.cpp files']
    rules_seen = set()
    for f in fixtures:
        path = os.path.join(FIXTURES, f)
        with open(path, encoding='utf-8') as fh:
            want = {(n, m.group(1)) for n, line in enumerate(fh, 1) for m in [MARK_RE.search(line)] if m}
        if f.startswith('bad_') and not want:
            problems.append('%s: no line is marked with the finding it must give ("// <- a")' % f)
        if f.startswith('good_') and want:
            problems.append('%s: a good fixture marks a finding' % f)
        findings = []
        lint_file(path, 'fixtures/' + f, pg_names, load_types([path]), findings)
        got = {(line, rule) for _, line, rule, _ in findings}
        rules_seen.update(rule for _, rule in want & got)
        for line, rule in sorted(want - got):
            problems.append('%s:%d: rule %s not found' % (f, line, rule))
        for display, line, rule, message in sorted(findings):
            if (line, rule) not in want:
                problems.append('%s:%d: unexpected finding: rule %s: %s' % (f, line, rule, message))
    for rule in 'ab':
        if rule not in rules_seen:
            problems.append('no fixture exercises rule %s' % rule)
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('files', nargs='*', help='files to check (default: src/pg/**/*.cpp, *.h)')
    ap.add_argument('--headers', default=HEADERS, help='PostgreSQL server headers (default: %(default)s)')
    ap.add_argument('--no-self-test', action='store_true', help='skip the fixtures')
    args = ap.parse_args()
    try:
        pg_names = pg_function_names(args.headers, source_files(os.path.join(ROOT, 'src', 'pg')))
        if not args.no_self_test:
            problems = self_test(pg_names)
            if problems:
                for p in problems:
                    print('boundary: self-test: %s' % p)
                print('boundary: the self-test failed (test/lint/fixtures/): the lint is not trusted')
                return 1
        files = args.files or source_files(os.path.join(ROOT, 'src', 'pg'))
        types = load_types(files if args.files else ())
        findings = []
        for path in files:
            rel = os.path.relpath(os.path.abspath(path), ROOT)
            lint_file(path, path if rel.startswith('..') else rel, pg_names, types, findings)
    except (Lint, OSError, UnicodeDecodeError) as e:
        print('boundary: %s' % e)
        return 2
    for display, line, rule, message in sorted(findings):
        print('%s:%d: rule %s: %s' % (display, line, rule, message))
    print('boundary: %d finding%s in %d files (rule a: no PostgreSQL call inside ls_cpp; rule b: no C++ object '
          'with a destructor in a PostgreSQL frame; %d PostgreSQL names)'
          % (len(findings), '' if len(findings) == 1 else 's', len(files), len(pg_names)))
    return 1 if findings else 0


if __name__ == '__main__':
    sys.exit(main())
