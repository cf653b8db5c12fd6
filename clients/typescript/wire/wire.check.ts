/**
 * The library's wire types against keybroker's OpenAPI document
 * (handlers/openapi.json). Never run, only type-checked: handlers/apidoc's
 * TestTheTypeScriptLibraryMatchesTheDocument writes the document's schemas
 * as TypeScript interfaces (module "keybroker-openapi") and compiles this
 * file with the library's compiler and settings. A field that one side has
 * and the other lacks fails with the field's name; so does a type the
 * other side cannot take: what the library sends must fit the document's
 * request schema, what keybroker answers must fit the library's interface.
 */
import type * as doc from "keybroker-openapi";
import type { ProxyToken, ProxyTokenRequest, ReportRequest, ReportResult, ResolveAnswer, ResolveRequest, Resolution, WatchEvent } from "../src/types.js";

/** The fields only one side names; `never` when both name the same. */
type OnlyOneSide<A, B> = Exclude<keyof A, keyof B> | Exclude<keyof B, keyof A>;
/** Compiles when D is never; otherwise the error names the fields. */
type SameFields<D extends never> = D;
/** The data fields of a class (its methods and symbol keys left out). */
type DataFields<T> = { [K in keyof T]: T[K] extends (...args: never[]) => unknown ? never : K }[keyof T] & string;
/** Compiles when a value of type A is a valid B. */
type Fits<A extends B, B> = [A, B];

// Requests: the library sends them.
export type ResolveRequestFields = SameFields<OnlyOneSide<ResolveRequest, doc.ResolveRequest>>;
export type ResolveRequestFits = Fits<ResolveRequest, doc.ResolveRequest>;
export type ReportRequestFields = SameFields<OnlyOneSide<ReportRequest, doc.ReportRequest>>;
export type ReportRequestFits = Fits<ReportRequest, doc.ReportRequest>;
export type ProxyTokenRequestFields = SameFields<OnlyOneSide<ProxyTokenRequest, doc.ProxyTokenRequest>>;
export type ProxyTokenRequestFits = Fits<ProxyTokenRequest, doc.ProxyTokenRequest>;

// Answers: the library reads them.
export type ResolveAnswerFields = SameFields<OnlyOneSide<ResolveAnswer, doc.ResolveResponse>>;
export type ResolveAnswerFits = Fits<doc.ResolveResponse, ResolveAnswer>;
export type ReportResultFields = SameFields<OnlyOneSide<ReportResult, doc.ReportResult>>;
export type ReportResultFits = Fits<doc.ReportResult, ReportResult>;
export type WatchEventFields = SameFields<OnlyOneSide<WatchEvent, doc.WatchEvent>>;
export type WatchEventFits = Fits<doc.WatchEvent, WatchEvent>;

// The classes the library answers with hold every field of the answer
// (their types are the library's own: Date for a time, readonly arrays).
export type ResolutionFields = SameFields<Exclude<DataFields<Resolution>, keyof doc.ResolveResponse> | Exclude<keyof doc.ResolveResponse, DataFields<Resolution>>>;
export type ProxyTokenFields = SameFields<Exclude<DataFields<ProxyToken>, keyof doc.ProxyToken> | Exclude<keyof doc.ProxyToken, DataFields<ProxyToken>>>;
